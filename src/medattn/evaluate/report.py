"""`evaluate` and `predict` for classification runs: scoring a split, classifying files, printing reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.sources import open_source
from medattn.data.tensors import prepare_image
from medattn.errors import DataError
from medattn.inference import predict_probs, tta_flips
from medattn.progress import track
from medattn.runs import atomic_write_json, read_json
from medattn.tune.ensemble import load_ensemble, member_inputs


def evaluate_run(run_dir: str | Path, *, data: str | None = None, split: str = "test", tta: bool = False) -> dict:
    """Score a run, or the fold ensemble of a cross-validation directory (mean of the members' probabilities)."""
    from medattn.evaluate.metrics import classification_metrics
    from medattn.segment_predict import is_segmentation_run

    if is_segmentation_run(run_dir):
        from medattn.evaluate.segment_report import evaluate_segmentation

        if tta:
            raise DataError(f"{run_dir}: --tta is for classification runs, not segmentation")
        return evaluate_segmentation(run_dir, data=data, split=split)
    run = load_ensemble(run_dir)  # a plain run is an ensemble of one
    path = data or run.config.data.path
    source = open_source(path, task=run.task, class_names=None)
    if len(source.class_names) != len(run.class_names):
        raise DataError(
            f"{path}: {len(source.class_names)} classes, but the run was trained on "
            f"{len(run.class_names)} ({', '.join(run.class_names)})"
        )
    if split not in source.splits:
        raise DataError(f"{path}: no {split!r} split (found: {', '.join(source.splits)})")
    probs, flips = [], None
    reading = lambda items: track(items, f"reading {split} images")  # noqa: E731
    for member, prepared in member_inputs(run, source, split, progress=reading):
        _check_input(member, prepared.x.shape[1:], where=f"{path} [{split}]")
        flips = tta_flips(member.config, member.card["model"]["spatial_dims"]) if tta else None
        probs.append(predict_probs(member.model, prepared.x, task=member.task, flips=flips))
    metrics = classification_metrics(
        prepared.y.numpy(),
        np.mean(probs, axis=0),  # (N, K)
        task=run.task,
        threshold=run.threshold,
        class_names=run.class_names,
    )
    metrics = {"run": str(run.path), "data": str(path), "split": split, "task": run.task, "tta": flips, **metrics}
    if len(run.members) > 1:
        metrics["ensemble"] = {"members": len(run.members), "threshold_rule": run.threshold_rule}
    recorded = read_json(run.path / "metrics.json") if (run.path / "metrics.json").is_file() else {}
    recorded[f"{split}+tta" if tta else split] = metrics
    atomic_write_json(run.path / "metrics.json", recorded)
    return metrics


def _check_input(run, shape, *, where: str) -> None:
    channels, spatial = shape[0], list(shape[1:])
    expected = run.card["model"]
    if len(spatial) != expected["spatial_dims"]:
        raise DataError(f"{where}: {len(spatial)}D images, but the model is {expected['spatial_dims']}D")
    if channels != expected["in_channels"]:
        raise DataError(f"{where}: {channels} channel(s), but the model takes {expected['in_channels']}")


def predict_files(run_dir: str | Path, files: list[Path], *, tta: bool = False) -> dict:
    from medattn.data.readers import read_image

    run = load_ensemble(run_dir)  # a plain run is an ensemble of one
    rows = []
    for file in files:
        raw, meta = read_image(file)
        probs = []
        for member in run.members:  # each prepares the image with its own card
            array = _match_channels(raw, member.card["model"]["in_channels"], where=str(file))
            size = member.size if len(member.size) == array.ndim - 1 else None
            x = prepare_image(array, member.intensity, size, where=str(file))
            _check_input(member, x.shape[1:], where=str(file))
            flips = tta_flips(member.config, len(member.size)) if tta else None
            probs.append(predict_probs(member.model, x, task=member.task, flips=flips)[0])
        rows.append({"file": str(file), **_decide(np.mean(probs, axis=0), run), "modality": meta.modality})
    return {"run": str(run.path), "task": run.task, "predictions": rows}


def _match_channels(array: np.ndarray, channels: int, *, where: str) -> np.ndarray:
    """A grayscale image stored as RGB (three equal channels) is taken as grayscale; other mismatches fail."""
    if (
        array.shape[0] == 3
        and channels == 1
        and np.array_equal(array[0], array[1])
        and np.array_equal(array[0], array[2])
    ):
        return array[:1]
    if array.shape[0] == 3 and channels == 1:
        raise DataError(f"{where}: a colour image, but the model takes 1-channel (grayscale) input")
    return array


def _decide(probs: np.ndarray, run) -> dict:
    names = run.class_names
    threshold = run.threshold
    if run.task == "multilabel":
        cut = 0.5 if threshold is None else threshold
        chosen = [n for n, p in zip(names, probs, strict=True) if p > cut]  # strict, as MedMNIST
        return {"class": chosen, "probabilities": dict(zip(names, map(float, probs), strict=True))}
    index = int(probs[1] > threshold) if run.task == "binary" and threshold is not None else int(np.argmax(probs))
    return {
        "class": names[index],
        "class_index": index,
        "probabilities": dict(zip(names, map(float, probs), strict=True)),
    }


def print_report(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    if metrics.get("task") == "segmentation":
        from medattn.evaluate.segment_report import print_segmentation_report

        return print_segmentation_report(metrics)

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
    if matrix is not None and metrics["task"] != "multilabel":
        console.print("confusion matrix (rows: true, columns: predicted):")
        for row in matrix:
            console.print("  " + " ".join(f"{v:>6}" for v in row))
    console.print(f"metrics written to {Path(metrics['run']) / 'metrics.json'}")
