"""Hyperparameter search: an Optuna study whose every trial is a cross-validation, resumable after a kill.

DIR/grid.yaml     the search as started (a resume checks that the grid file has not changed since)
DIR/study.db      the Optuna study (SQLite): finished trials are never run again
DIR/trial-<n>/    trial n's cross-validation directory (cv.json, fold runs, ensemble.json)
DIR/results.md    every trial, best first: mean +- std of the metric and the values tried
DIR/best.yaml     the best trial's full run config, for `medattn train --config DIR/best.yaml`

A trial cut short by a kill stays RUNNING in the study. The next run with --resume tries that point again
(the grid sampler leaves it for last) and continues its cross-validation where it stopped: finished folds are
kept. Only one process may work on a DIR at a time.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import yaml

from medattn.config import save_config
from medattn.errors import ConfigError, RunDirError
from medattn.runs import atomic_write_text, prepare_run_dir
from medattn.tune.cv import PLAN_FILE, CVSettings, run_cv
from medattn.tune.space import GridSpec, grid_from_dict, metric_of, point_config, task_of

STUDY_FILE, SPEC_FILE, RESULTS_FILE, BEST_FILE = "study.db", "grid.yaml", "results.md", "best.yaml"
STUDY_NAME = "medattn-grid"


def run_grid(spec: GridSpec, out: str | Path, *, resume: bool = False, force: bool = False, quiet: bool = False):
    """Search `spec` into `out` and return a summary; the trials themselves are in out/results.md."""
    import optuna

    out = Path(out)
    if not spec.base.data.path:
        raise ConfigError(f"--data is required (or base.data.path in {spec.path})")
    if resume and force:
        raise RunDirError("--resume and --force contradict each other: choose one")
    task = task_of(spec)
    if task is None:
        raise ConfigError(f"--data {spec.base.data.path}: the path does not exist")
    spec.metric = metric_of(spec, task)
    sign = -1.0 if spec.metric in task.lower_is_better else 1.0
    dims = task.spatial_dims(spec.base)  # reads the data first: a bad path fails before anything is written
    if resume:
        _check_same_search(spec, out)
    else:
        prepare_run_dir(out, resume=False, force=force)
        atomic_write_text(out / SPEC_FILE, yaml.safe_dump({**spec.to_dict(), "trials": spec.trials}, sort_keys=False))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / STUDY_FILE).resolve()}")
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        sampler=_sampler(spec),
        direction="maximize",
        load_if_exists=True,
    )
    running = optuna.trial.TrialState.RUNNING
    stale = {_key(t.params): t.number for t in study.get_trials(deepcopy=False, states=(running,))}
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    target = min(spec.trials or spec.size, spec.size) if spec.sampler == "grid" else (spec.trials or spec.size)
    remaining = max(0, target - len(finished))
    continued: dict[int, int] = {}
    settings = CVSettings(folds=spec.folds, repeats=spec.repeats, group=spec.group)

    def objective(trial) -> float:
        try:
            return run_trial(trial)
        except FloatingPointError as error:  # this point diverged: recorded as failed, the search goes on
            trial.set_user_attr("error", str(error))
            raise
        except (Exception, KeyboardInterrupt) as error:  # stays RUNNING, so --resume tries this point again
            raise _Abort(error) from error

    def run_trial(trial) -> float:
        tick = time.perf_counter()
        point = {
            key: json.loads(trial.suggest_categorical(key, _choices(values))) for key, values in spec.search.items()
        }
        config = point_config(spec, point, spatial_dims=dims)
        trial_dir = out / f"trial-{trial.number}"
        earlier = stale.pop(_key(trial.params), None)
        if earlier is not None and (out / f"trial-{earlier}").is_dir() and not trial_dir.exists():
            os.replace(out / f"trial-{earlier}", trial_dir)  # continue the killed trial's finished folds
            continued[earlier] = trial.number
        trial.set_user_attr("dir", trial_dir.name)
        again = (trial_dir / PLAN_FILE).is_file()
        result = run_cv(config, trial_dir, settings=settings, resume=again, force=not again, quiet=quiet)
        trial.set_user_attr("mean", result["mean"])
        trial.set_user_attr("std", result["std"])
        score = sign * result["mean"].get(spec.metric, math.nan)
        if not math.isfinite(score):  # Optuna records a NaN value as a failed trial
            trial.set_user_attr("error", f"{spec.metric} undefined on some fold")
        if not quiet:
            _say(f"trial {trial.number}: {_describe(point)} -> {spec.metric} {sign * score:.4f}", tick)
        return score

    def report(study, _trial) -> None:
        write_reports(study, spec, out, dims=dims, keys=task.summary_keys)

    try:
        if remaining:
            study.optimize(objective, n_trials=remaining, catch=(FloatingPointError,), callbacks=[report])
    except _Abort as abort:
        raise abort.error from None  # the original error, with its own traceback
    finally:
        study_id = storage.get_study_id_from_name(STUDY_NAME)
        for earlier, later in continued.items():  # a killed trial, taken over by `later`: close it
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, earlier)
            storage.set_trial_user_attr(trial_id, "error", f"interrupted; continued as trial {later}")
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    return write_reports(study, spec, out, dims=dims, keys=task.summary_keys)


class _Abort(BaseException):
    """Carries an error or Ctrl-C through Optuna, which would otherwise mark the trial failed for good (a failed
    grid point is never sampled again); left RUNNING, the point is retried by the next --resume."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def write_reports(study, spec: GridSpec, out: Path, *, dims: int, keys=()) -> dict:
    """results.md (every trial, best first) and best.yaml (the best trial's run config); returns the summary."""
    rows = [_row(trial, spec) for trial in study.get_trials(deepcopy=False)]
    rows.sort(key=lambda r: (r["state"] != "COMPLETE", -(r["score"] if r["score"] is not None else -math.inf)))
    best = next((r for r in rows if r["state"] == "COMPLETE" and r["score"] is not None), None)
    summary = {
        "dir": str(out),
        "metric": spec.metric,
        "sampler": spec.sampler,
        "trials": rows,
        "best": None,
    }
    if best is not None:
        config = point_config(spec, best["params"], spatial_dims=dims)
        save_config(config, out / BEST_FILE)
        summary["best"] = {**best, "config": str(out / BEST_FILE)}
    atomic_write_text(out / RESULTS_FILE, _markdown(rows, spec, keys))
    return summary


def load_spec_for_resume(out: str | Path, data: str | None) -> GridSpec:
    """The grid saved in DIR/grid.yaml, for a resume started without --grid."""
    path = Path(out) / SPEC_FILE
    if not path.is_file():
        raise RunDirError(f"cannot resume {out}: no {SPEC_FILE} there (start a new search without --resume)")
    spec = grid_from_dict(yaml.safe_load(path.read_text()), where=str(path))
    if data:
        spec.base.data.path = data
    return spec


def _check_same_search(spec: GridSpec, out: Path) -> None:
    if not (out / STUDY_FILE).is_file() or not (out / SPEC_FILE).is_file():
        raise RunDirError(f"cannot resume {out}: no {STUDY_FILE} there (start a new search without --resume)")
    saved = yaml.safe_load((out / SPEC_FILE).read_text())
    saved.pop("trials", None)
    if saved != json.loads(json.dumps(spec.to_dict())):
        raise ConfigError(
            f"{spec.path} differs from the search started in {out} ({out / SPEC_FILE}): "
            "resume with the same grid (only trials may change), or start a new directory"
        )


def _sampler(spec: GridSpec):
    import optuna

    seed = spec.base.train.seed
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({k: _choices(v) for k, v in spec.search.items()}, seed=seed)
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _choices(values: list[Any]) -> list[str]:
    """Values as JSON text: Optuna stores only scalars, and a searched value may be a list (depths)."""
    return [json.dumps(value) for value in values]


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def _row(trial, spec: GridSpec) -> dict:
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    return {
        "trial": trial.number,
        "state": trial.state.name,
        "score": value,
        "mean": trial.user_attrs.get("mean", {}),
        "std": trial.user_attrs.get("std", {}),
        "params": {key: json.loads(text) for key, text in trial.params.items()},
        "dir": trial.user_attrs.get("dir", f"trial-{trial.number}"),
        "error": trial.user_attrs.get("error"),
    }


def _markdown(rows: list[dict], spec: GridSpec, summary_keys) -> str:
    keys = list(spec.search)
    metrics = list(dict.fromkeys([spec.metric, *summary_keys[:3]]))
    folds = f"{spec.folds}-fold cross-validation" + (f" x {spec.repeats} repeats" if spec.repeats > 1 else "")
    lines = [
        f"# Search over {', '.join(keys)}",
        "",
        f"Grid file: {spec.path}; data: {spec.base.data.path}; sampler: {spec.sampler}.",
        f"Score: mean {spec.metric} over a {folds} (± sample standard deviation over folds); best first.",
        "",
        "| rank | trial | state | " + " | ".join([*metrics, *keys]) + " | directory |",
        "|" + "---|" * (4 + len(metrics) + len(keys)),
    ]
    for rank, row in enumerate(rows, start=1):
        cells = [str(rank) if row["state"] == "COMPLETE" else "", str(row["trial"]), row["state"].lower()]
        for metric in metrics:
            mean, std = row["mean"].get(metric), row["std"].get(metric)
            cells.append(f"{mean:.4f} ± {std:.4f}" if isinstance(mean, float) and isinstance(std, float) else "")
        cells += [json.dumps(row["params"].get(key)) if key in row["params"] else "" for key in keys]
        cells.append(row["dir"] + (f" ({row['error']})" if row["error"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _describe(point: dict[str, Any]) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={json.dumps(value)}" for key, value in point.items())


def _say(text: str, tick: float) -> None:
    from medattn.progress import console

    console().print(f"{text} [{time.perf_counter() - tick:.1f} s]")
