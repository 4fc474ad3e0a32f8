"""K-fold cross-validation: every fold an ordinary run directory, scored on the fold it held out.

DIR/cv-plan.json   the config, the settings and the fold of every pooled image (written first: a resume
                   recomputes the folds and refuses data that no longer splits the same way)
DIR/fold-<r>-<k>/  a run trained on the other folds of repeat r, validated (best epoch, threshold) on fold k
DIR/cv.json        per-fold held-out metrics, their mean and sample standard deviation
DIR/ensemble.json  the fold runs, which `medattn evaluate DIR` and `medattn predict DIR` average

The held-out fold also picks each run's best epoch, so fold scores lean slightly optimistic (as in any CV
with early model selection); the test split of the source, when there is one, is never touched here.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from medattn.config import RunConfig
from medattn.data.sources import LabelledSource, open_source
from medattn.errors import DataError, RunDirError
from medattn.runs import CHECKPOINT, atomic_write_json, prepare_run_dir, read_json
from medattn.tune.ensemble import write_ensemble
from medattn.tune.folds import Fold, assignment, make_folds, pool_train_val

PLAN_FILE = "cv-plan.json"
CV_FILE = "cv.json"
HELD_OUT = "held-out fold"  # the key of the fold's own score in its metrics.json
SUMMARY_KEYS = ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1_macro", "ece", "mae", "qwk")


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
    config: RunConfig,
    out: str | Path,
    *,
    settings: CVSettings,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
) -> dict:
    """Cross-validate `config` into `out`; with resume, the plan saved there wins over the arguments."""
    out = Path(out)
    if resume:
        plan = read_json(prepare_cv_dir(out, resume=True, force=force) / PLAN_FILE)
        config = RunConfig.from_dict(plan["config"], source=str(out / PLAN_FILE))
        settings = CVSettings(**plan["settings"])
    source = open_source(config.data.path, task=config.data.task, class_names=config.data.class_names)
    pooled = pool_train_val(source)
    folds = make_folds(
        pooled,
        folds=settings.folds,
        repeats=settings.repeats,
        seed=config.train.seed,
        group=settings.group,
        class_names=source.class_names,
        where=config.data.path,
    )
    table = assignment(folds, len(pooled))
    if resume and plan["assignment"] != table:
        raise DataError(
            f"{config.data.path} no longer splits into the folds recorded in {out / PLAN_FILE}: "
            "the data changed since this cross-validation started; start a new one"
        )
    grouped = pooled.patient_ids is not None and settings.group != "none"
    if not resume:  # the directory is made only now, once the data is known to split
        prepare_cv_dir(out, resume=False, force=force)
        plan = {"config": config.to_dict(), "settings": asdict(settings), "grouped": grouped, "assignment": table}
        atomic_write_json(out / PLAN_FILE, plan)
    rows = []
    for number, fold in enumerate(folds, start=1):
        tick = time.perf_counter()
        fold_source = source_for_fold(source, pooled, fold, total=settings.folds, grouped=grouped)
        run = out / fold.name
        status = train_fold(_fold_config(config, fold), run, fold_source, quiet=quiet)
        metrics = score_fold(run, fold_source)
        rows.append({"repeat": fold.repeat, "fold": fold.index, "run": fold.name, "status": status, **metrics})
        if not quiet:
            _say(f"{fold.name} ({number}/{len(folds)}, {status}): held-out {_brief(metrics)}", tick)
    mean, std = summarise(rows)
    result = {
        "dir": str(out),
        "data": config.data.path,
        "settings": {**asdict(settings), "grouped_by_patient": grouped, "pooled_images": len(pooled)},
        "folds": rows,
        "mean": mean,
        "std": std,
        "config": config.to_dict(),
        "notes": _notes(source, grouped),
    }
    atomic_write_json(out / CV_FILE, _finite(result))
    note = f"{len(folds)} fold runs of a {settings.folds}-fold cross-validation x {settings.repeats}"
    write_ensemble(out, [out / fold.name for fold in folds], note=note)
    return result


def source_for_fold(source: LabelledSource, pooled, fold: Fold, *, total: int, grouped: bool) -> LabelledSource:
    """The source as this fold's run sees it: train = the other folds, val = the held-out fold, test as is."""
    splits = {"train": pooled.subset(fold.train), "val": pooled.subset(fold.held_out)}
    if "test" in source.splits:
        splits["test"] = source.splits["test"]
    how = "grouped by patient" if grouped else "by image"
    note = (
        f"cross-validation fold {fold.index + 1}/{total} of repeat {fold.repeat + 1}: "
        f"{len(fold.held_out)} held-out images for validation, {len(fold.train)} for training (stratified, {how})"
    )
    return LabelledSource(
        path=source.path,
        kind=source.kind,
        task=source.task,
        class_names=list(source.class_names),
        splits=splits,
        modality=source.modality,
        notes=[*source.notes, note],
    )


def train_fold(config: RunConfig, run: Path, source: LabelledSource, *, quiet: bool) -> str:
    """Train one fold unless it is finished; continue it from its checkpoint when one was left by a kill."""
    from medattn.train.engine import fit

    if (run / "model.json").is_file():
        return "kept"
    if (run / CHECKPOINT).is_file():
        fit(config, run, resume=True, quiet=quiet, source=source)
        return "resumed"
    fit(config, prepare_run_dir(run, resume=False, force=True), quiet=quiet, source=source)
    return "trained"


def score_fold(run: Path, source: LabelledSource) -> dict:
    """Scalar metrics of the run on its held-out fold (the source's val split), cached in its metrics.json."""
    from medattn.evaluate.metrics import classification_metrics
    from medattn.inference import load_run, predict_probs
    from medattn.tune.ensemble import Ensemble, member_inputs

    recorded = read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    if HELD_OUT in recorded:
        return recorded[HELD_OUT]
    loaded = load_run(run)
    (member, prepared), *_ = member_inputs(Ensemble(run, [loaded], None, ""), source, "val")
    probs = predict_probs(member.model, prepared.x, task=member.task)
    metrics = classification_metrics(
        prepared.y.numpy(), probs, task=member.task, threshold=member.card.get("threshold"), ci=False
    )
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    recorded[HELD_OUT] = _finite(scalars)
    atomic_write_json(run / "metrics.json", recorded)
    return recorded[HELD_OUT]


def summarise(rows: list[dict]) -> tuple[dict, dict]:
    """Mean and sample standard deviation (n - 1) over folds of every summary metric all folds have."""
    mean, std = {}, {}
    for key in SUMMARY_KEYS:
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


def _notes(source: LabelledSource, grouped: bool) -> list[str]:
    notes = ["fold metrics are on each fold's held-out images, which also chose that run's best epoch"]
    notes.append("folds grouped by patient: no patient in two folds" if grouped else "folds split by image")
    if "test" in source.splits:
        notes.append(f"the test split ({len(source.splits['test'])} images) was not used: score it with evaluate")
    else:
        notes.append(f"{source.path} has no test split: every image took part in the cross-validation")
    return notes


def _finite(value):
    """NaN (an AUC undefined on one class) becomes None, so the JSON files are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _brief(metrics: dict) -> str:
    parts = [f"{k} {metrics[k]:.3f}" for k in ("auc", "acc", "balanced_acc") if isinstance(metrics.get(k), float)]
    return " ".join(parts) or "no metrics"


def _say(text: str, tick: float) -> None:
    from medattn.progress import console

    console().print(f"{text} [{time.perf_counter() - tick:.1f} s]")
