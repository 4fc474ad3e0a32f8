"""`evaluate` for classification runs: scoring a split (a run, or a fold ensemble), and the printed report."""

from __future__ import annotations

from pathlib import Path

from medattn.errors import DataError
from medattn.progress import track
from medattn.runs import record_metrics


def evaluate_run(run_dir: str | Path, *, data: str | None = None, split: str = "test", tta: bool = False) -> dict:
    """Score a run, or the fold ensemble of a cross-validation directory (mean of the members' probabilities)."""
    from medattn.tasks.classify.metrics import classification_metrics
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)  # a plain run is an ensemble of one
    source, path = open_like_training(run, data)
    if split not in source.splits:
        raise DataError(f"{path}: no {split!r} split (found: {', '.join(source.splits)})")
    truth, probs, flips = split_probabilities(run, source, split, tta=tta, where=f"{path} [{split}]")
    metrics = classification_metrics(
        truth,
        probs,  # (N, K)
        task=run.labels,
        threshold=run.threshold,
        class_names=run.class_names,
    )
    metrics = {
        "run": str(run.path),
        "data": str(path),
        "split": split,
        "task": run.task,
        "labels": run.labels,
        "tta": flips,
        **metrics,
    }
    if len(run.members) > 1:
        metrics["ensemble"] = {"members": len(run.members), "threshold_rule": run.threshold_rule}
    return record_metrics(run.path, f"{split}+tta" if tta else split, metrics)


def split_probabilities(run, source, split: str, *, tta: bool = False, where: str):
    """(truth, mean probabilities over the members (N, K), the flips used) for a split of `source`; a split of
    volumes given to a 2D model is scored per volume, on the mean over its slices."""
    from medattn.engine.loaded import tta_flips
    from medattn.tasks.classify.predict import predict_probs
    from medattn.tune.ensemble import split_outputs

    flips = None  # reported: the members' test-time flips

    def probabilities(member, x):
        nonlocal flips
        _check_input(member, (x[0] if isinstance(x, tuple) else x).shape[1:], where=where)
        flips = tta_flips(member.config, member.spec.spatial_dims) if tta else None
        return predict_probs(member.model, x, labels=member.labels, flips=flips)

    reading = lambda items: track(items, f"reading {split} images")  # noqa: E731
    probs, truth = split_outputs(run, source, split, probabilities, progress=reading)  # (N, K)
    return truth, probs, flips


def open_like_training(run, data: str | None):
    """(source, path): `data` (default the run's own, split exactly as training carved it), checked against the
    run's classes. `run` is a loaded run or ensemble."""
    from medattn.tasks.classify.sources import ensure_splits, open_source

    config = run.config
    path = data or config.data.path
    source = open_source(path, labels=run.labels, class_names=None)
    names = run.class_names if hasattr(run, "class_names") else run.card["class_names"]
    if len(source.class_names) != len(names):
        raise DataError(
            f"{path}: {len(source.class_names)} classes, but the run was trained on {len(names)} ({', '.join(names)})"
        )
    if data is None or Path(data).resolve() == Path(config.data.path).resolve():
        fractions = {"val_fraction": config.data.val_fraction, "test_fraction": config.data.test_fraction}
        ensure_splits(source, seed=config.train.seed, **fractions)  # the splits exactly as training carved them
    return source, path


def _check_input(run, shape, *, where: str) -> None:
    channels, spatial = shape[0], list(shape[1:])
    expected = run.card["model"]
    if len(spatial) != expected["spatial_dims"]:
        raise DataError(f"{where}: {len(spatial)}D images, but the model is {expected['spatial_dims']}D")
    if channels != expected["in_channels"]:
        raise DataError(f"{where}: {channels} channel(s), but the model takes {expected['in_channels']}")


def print_report(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['split']} split of {metrics['data']} (n = {metrics['n']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for key in ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1_macro", "ece"):
        if key in metrics:
            ci = metrics.get(f"{key}_ci")
            table.add_row(key, f"{metrics[key]:.4f}", f"{ci[0]:.4f} – {ci[1]:.4f}" if ci else "")
    console = Console()
    console.print(table)
    matrix = metrics.get("confusion_matrix")
    if matrix is not None and metrics.get("labels") != "multilabel":
        console.print("confusion matrix (rows: true, columns: predicted):")
        for row in matrix:
            console.print("  " + " ".join(f"{v:>6}" for v in row))
    console.print(f"metrics written to {Path(metrics['run']) / 'metrics.json'}")
