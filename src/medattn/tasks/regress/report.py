"""`evaluate`, `predict` and `data inspect` for regression runs and data.

`evaluate` scores a split (a run, or the mean of a fold ensemble's members) with MAE, RMSE, R², Pearson and
Spearman and their bootstrap 95% intervals, and writes a calibration plot, predicted against true, beside the run
(`calibration-<split>.png`). The split is rebuilt as training carved it (the run's seed and fractions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.errors import DataError
from medattn.runs import record_metrics


def _values(run, *, tta: bool):
    """predict(member, x) -> values (N, T) in the targets' units, for `split_outputs` and `volume_outputs`."""
    from medattn.engine.loaded import tta_flips
    from medattn.tasks.regress.task import predict_values

    def predict(member, x):
        card = member.card
        flips = tta_flips(member.config, member.spec.spatial_dims) if tta else None
        return predict_values(member.model, x, mean=card["target_mean"], std=card["target_std"], flips=flips)

    return predict


def _member_predictions(run, source, split: str, *, tta: bool):
    """(truth (N, T), mean prediction over members (N, T)) for a split of `source`."""
    from medattn.progress import track
    from medattn.tune.ensemble import split_outputs

    reading = lambda items: track(items, f"reading {split} images")  # noqa: E731
    pred, truth = split_outputs(run, source, split, _values(run, tta=tta), progress=reading)
    return np.asarray(truth, dtype=np.float64), pred


def _open_like_training(run, data: str | None):
    from medattn.tasks.regress.sources import ensure_splits, open_targets

    config = run.config
    path = data or config.data.path
    names = run.members[0].card["target_names"]
    source = open_targets(path, targets=config.data.targets)
    if source.target_names != names:
        raise DataError(f"{path}: targets {source.target_names}, but the run predicts {names}")
    if data is None or Path(data).resolve() == Path(config.data.path).resolve():
        fractions = {"val_fraction": config.data.val_fraction, "test_fraction": config.data.test_fraction}
        ensure_splits(source, seed=config.train.seed, **fractions)  # the splits exactly as training carved them
    return source, path


def score_split(run_dir, source, split: str, *, tta: bool) -> dict:
    from medattn.tasks.regress.metrics import regression_metrics
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir) if isinstance(run_dir, str | Path) else run_dir
    if split not in source.splits:
        raise DataError(f"{source.path}: no {split!r} split (found: {', '.join(source.splits)})")
    truth, pred = _member_predictions(run, source, split, tta=tta)
    return regression_metrics(truth, pred, target_names=source.target_names, ci=False)


def evaluate_run(run_dir, *, data: str | None, split: str, tta: bool, task) -> dict:
    from medattn.tasks.regress.metrics import calibration_plot, regression_metrics
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    source, path = _open_like_training(run, data)
    if split not in source.splits:
        raise DataError(f"{path}: no {split!r} split (found: {', '.join(source.splits)})")
    truth, pred = _member_predictions(run, source, split, tta=tta)
    names = source.target_names
    plot = run.path / f"calibration-{split}{'+tta' if tta else ''}.png"
    calibration_plot(truth, pred, target_names=names, path=plot, title=f"{split} split of {Path(path).name}")
    metrics = {
        "run": str(run.path),
        "data": str(path),
        "split": split,
        "task": task.name,
        "tta": tta,
        **regression_metrics(truth, pred, target_names=names),
        "calibration_plot": str(plot),
    }
    if len(run.members) > 1:
        metrics["ensemble"] = {"members": len(run.members), "combine": "mean of member predictions"}
    return record_metrics(run.path, f"{split}+tta" if tta else split, metrics)


def predict_files(run_dir, files: list[Path], *, tta: bool, series: str | None = None) -> dict:
    from medattn.data.clinical_images import file_patient
    from medattn.data.readers import read_image
    from medattn.tune.ensemble import load_ensemble, volume_outputs

    run = load_ensemble(run_dir)
    names = run.members[0].card["target_names"]
    predict = _values(run, tta=tta)
    rows = []
    for file in files:
        raw, meta = read_image(file, series_uid=series)
        patient, known = file_patient(file)
        axis, per_slice = volume_outputs(run, raw, meta, predict, where=str(file), patient=patient)  # (1 or S, T)
        row = {"file": str(file), "values": dict(zip(names, map(float, per_slice.mean(axis=0)), strict=True)), **known}
        if axis is not None:
            row["slices"] = {
                "axis": axis,
                "count": len(per_slice),
                "aggregate": "mean over slices",
                "per_slice": [dict(zip(names, map(float, v), strict=True)) for v in per_slice],
            }
        rows.append(row)
    return {"run": str(run.path), "task": run.task, "predictions": rows}


def print_report(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['split']} split of {metrics['data']} (n = {metrics['n']})")
    table.add_column("target")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")

    def number(value) -> str:
        return "–" if value is None or not np.isfinite(value) else f"{value:.4g}"

    for name, row in metrics["per_target"].items():
        for key in ("mae", "rmse", "r2", "pearson", "spearman"):
            ci = row.get(f"{key}_ci")
            interval = f"{number(ci[0])} – {number(ci[1])}" if ci else ""
            table.add_row(name, key, number(row[key]), interval)
    console = Console()
    console.print(table)
    console.print(f"calibration plot: {metrics['calibration_plot']}")
    console.print(f"metrics written to {Path(metrics['run']) / 'metrics.json'}")


def inspect_targets(path: str) -> dict:
    """Per split and target: count, mean, sd, range; patients per split and in more than one split."""
    from medattn.tasks.regress.sources import open_targets

    source = open_targets(path)
    targets = {}
    for split, data in source.splits.items():
        targets[split] = {
            name: {
                "n": len(data),
                "mean": float(data.labels[:, j].mean()),
                "std": float(data.labels[:, j].std()),
                "min": float(data.labels[:, j].min()),
                "max": float(data.labels[:, j].max()),
            }
            for j, name in enumerate(source.target_names)
        }
    owners: dict[str, set] = {}
    for split, data in source.splits.items():
        for patient in data.patient_ids or []:
            owners.setdefault(patient, set()).add(split)
    shared = sorted(p for p, splits in owners.items() if len(splits) > 1)
    patients = {"in_more_than_one_split": len(shared), "examples": shared[:10]} if owners else None
    return {
        "path": source.path,
        "kind": source.kind,
        "task": "regression",
        "target_names": source.target_names,
        "splits": {name: len(split) for name, split in source.splits.items()},
        "targets": targets,
        "patients": patients,
    }
