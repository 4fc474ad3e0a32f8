"""K-fold cross-validation, for any task: every fold an ordinary run directory, scored on the fold it held out.

DIR/cv-plan.json   the config, the settings and the fold of every pooled image or case (written first: a resume
                   recomputes the folds and refuses data that no longer splits the same way)
DIR/fold-<r>-<k>/  a run trained on the other folds of repeat r, validated (best epoch, threshold) on fold k
DIR/cv.json        per-fold held-out metrics, their mean and sample standard deviation
DIR/ensemble.json  the fold runs, which `medattn evaluate DIR` and `medattn predict DIR` average

The held-out fold also picks each run's best epoch, so fold scores lean slightly optimistic (as in any CV
with early model selection). The source is split as training splits it (its own test split, or one carved with
the run's seed), and the test split is never touched here: `medattn evaluate DIR` scores the ensemble on it.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from medattn.config import RunConfig
from medattn.errors import DataError, RunDirError
from medattn.runs import CHECKPOINT, atomic_write_json, finite, prepare_run_dir, read_json
from medattn.tasks.base import Pool
from medattn.tune.ensemble import write_ensemble
from medattn.tune.folds import Fold, assignment, make_folds

PLAN_FILE = "cv-plan.json"
CV_FILE = "cv.json"
HELD_OUT = "held-out fold"  # the key of the fold's own score in its metrics.json


@dataclass
class CVSettings:
    folds: int = 5
    repeats: int = 1
    group: str = "auto"  # auto | patient | none


def prepare_cv_dir(out: str | Path, *, resume: bool, force: bool) -> Path:
    """A new CV directory (refusing to overwrite without force), or one with a plan to resume."""
    out = Path(out)
    if resume and force:
        raise RunDirError("--resume and --force contradict each other: choose one")
    if resume:
        if not (out / PLAN_FILE).is_file():
            raise RunDirError(f"cannot resume {out}: no {PLAN_FILE} there (start a new cross-validation without it)")
        return out
    return prepare_run_dir(out, resume=False, force=force)


def run_cv(
    config: RunConfig | None,
    out: str | Path,
    *,
    settings: CVSettings,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
) -> dict:
    """Cross-validate `config` into `out`; with resume, the plan saved there wins over the arguments."""
    from medattn.tasks import task_for_config

    out = Path(out)
    if resume:
        plan = read_json(prepare_cv_dir(out, resume=True, force=force) / PLAN_FILE)
        config = RunConfig.from_dict(plan["config"], source=str(out / PLAN_FILE))
        settings = CVSettings(**plan["settings"])
    task = task_for_config(config)
    config.task = task.name
    source = task.open(config)
    pool = task.fold_pool(source)
    folds = make_folds(
        pool,
        folds=settings.folds,
        repeats=settings.repeats,
        seed=config.train.seed,
        group=settings.group,
        class_names=getattr(source, "class_names", None),
        where=config.data.path,
    )
    table = assignment(folds, pool.n)
    if resume and plan["assignment"] != table:
        raise DataError(
            f"{config.data.path} no longer splits into the folds recorded in {out / PLAN_FILE}: "
            "the data changed since this cross-validation started; start a new one"
        )
    grouped = pool.groups is not None and settings.group != "none"
    if not resume:  # the directory is made only now, once the data is known to split
        prepare_cv_dir(out, resume=False, force=force)
        plan = {"config": config.to_dict(), "settings": asdict(settings), "grouped": grouped, "assignment": table}
        atomic_write_json(out / PLAN_FILE, plan)
    rows = []
    for number, fold in enumerate(folds, start=1):
        tick = time.perf_counter()
        fold_source = task.fold_source(
            source, pool, fold.train, fold.held_out, _fold_note(fold, pool, total=settings.folds, grouped=grouped)
        )
        run = out / fold.name
        status = train_fold(_fold_config(config, fold), run, fold_source, quiet=quiet)
        metrics = score_fold(task, run, fold_source)
        rows.append({"repeat": fold.repeat, "fold": fold.index, "run": fold.name, "status": status, **metrics})
        if not quiet:
            _say(f"{fold.name} ({number}/{len(folds)}, {status}): held-out {_brief(metrics, task)}", tick)
    mean, std = summarise(rows, task.summary_keys)
    result = {
        "dir": str(out),
        "task": task.name,
        "data": config.data.path,
        "metric": task.fold_metric,
        "settings": {**asdict(settings), "grouped_by_patient": grouped, f"pooled_{pool.unit}": pool.n},
        "folds": rows,
        "mean": mean,
        "std": std,
        "config": config.to_dict(),
        "notes": _notes(source, pool, grouped),
    }
    atomic_write_json(out / CV_FILE, result)
    note = f"{len(folds)} fold runs of a {settings.folds}-fold cross-validation x {settings.repeats}"
    write_ensemble(out, [out / fold.name for fold in folds], note=note)
    return finite(result)


def _fold_note(fold: Fold, pool: Pool, *, total: int, grouped: bool) -> str:
    how = "grouped by patient" if grouped else f"by {pool.unit[:-1]}"
    stratified = "stratified, " if pool.strata is not None else ""
    return (
        f"cross-validation fold {fold.index + 1}/{total} of repeat {fold.repeat + 1}: "
        f"{len(fold.held_out)} held-out {pool.unit} for validation, {len(fold.train)} for training ({stratified}{how})"
    )


def train_fold(config: RunConfig, run: Path, source, *, quiet: bool) -> str:
    """Train one fold unless it is finished; continue it from its checkpoint when one was left by a kill."""
    from medattn.engine.trainer import fit

    if (run / "model.json").is_file():
        return "kept"
    if (run / CHECKPOINT).is_file():
        fit(config, run, resume=True, quiet=quiet, source=source)
        return "resumed"
    fit(config, prepare_run_dir(run, resume=False, force=True), quiet=quiet, source=source)
    return "trained"


def score_fold(task, run: Path, source) -> dict:
    """Scalar metrics of the run on its held-out fold (the source's val split), cached in its metrics.json."""
    recorded = read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    if HELD_OUT in recorded:
        return recorded[HELD_OUT]
    recorded[HELD_OUT] = finite(task.score_fold(run, source))
    atomic_write_json(run / "metrics.json", recorded)
    return recorded[HELD_OUT]


def summarise(rows: list[dict], keys) -> tuple[dict, dict]:
    """Mean and sample standard deviation (n - 1) over folds of every summary metric all folds have."""
    mean, std = {}, {}
    for key in keys:
        if not rows or any(key not in row for row in rows):
            continue
        values = [math.nan if row[key] is None else float(row[key]) for row in rows]  # None: undefined (NaN)
        mean[key] = statistics.fmean(values)
        std[key] = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _fold_config(config: RunConfig, fold: Fold) -> RunConfig:
    """Repeat r trains with seed + r, so repeats vary the initialisation as well as the split."""
    fold_config = RunConfig.from_dict(config.to_dict())
    fold_config.train.seed = config.train.seed + fold.repeat
    return fold_config


def _notes(source, pool: Pool, grouped: bool) -> list[str]:
    notes = [f"fold metrics are on each fold's held-out {pool.unit}, which also chose that run's best epoch"]
    notes.append("folds grouped by patient: no patient in two folds" if grouped else f"folds split by {pool.unit[:-1]}")
    if "test" in source.splits:
        notes.append(
            f"the test split ({len(source.splits['test'])} {pool.unit}) was not used: score the ensemble on it with "
            "medattn evaluate"
        )
    else:
        notes.append(f"{source.path} has no test split: every {pool.unit[:-1]} took part in the cross-validation")
    return notes


def _brief(metrics: dict, task) -> str:
    keys = [task.fold_metric, *(k for k in task.summary_keys[:3] if k != task.fold_metric)]
    parts = [f"{k} {metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), float)]
    return " ".join(parts) or "no metrics"


def _say(text: str, tick: float) -> None:
    from medattn.progress import console

    console().print(f"{text} [{time.perf_counter() - tick:.1f} s]")
