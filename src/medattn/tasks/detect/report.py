"""`evaluate` for detection runs: every image of a split detected whole (or by tiles), scored on its own pixels.

COCO mAP@0.5, mAP@0.5:0.95, AP per class, AR@100 and AP by object size (metrics.py), FROC (froc.py), and 95%
bootstrap intervals over images for map50, map and froc. The split is rebuilt exactly as training carved it;
data other than the run's own that declares no splits is scored whole ("all"). A fold ensemble pools the boxes
of its members and merges them by NMS.
"""

from __future__ import annotations

from pathlib import Path

from medattn.errors import ConfigError, DataError

N_BOOT = 1000


def score_detections(predictions: list[dict], truths: list[dict], class_names: list[str], *, ci: bool) -> dict:
    """Metrics of per-image detections against per-image ground truth (both with boxes and labels)."""
    import numpy as np

    from medattn.tasks.detect.froc import froc, hits_of, weighted_froc
    from medattn.tasks.detect.metrics import bootstrap_stats, coco_metrics, match_image

    results = [match_image(p, t, len(class_names)) for p, t in zip(predictions, truths, strict=True)]
    hits = [hits_of(p, t) for p, t in zip(predictions, truths, strict=True)]
    metrics = {**coco_metrics(results, class_names, sizes=ci), **froc(hits)}
    metrics["n"] = len(truths)
    metrics["n_boxes"] = int(sum(len(t["labels"]) for t in truths))
    metrics["n_detections"] = int(sum(len(p["labels"]) for p in predictions))
    if ci and truths:
        from medattn.evaluate.bootstrap import bootstrap_ci_weighted

        stats = bootstrap_stats(results, len(class_names))
        stats["froc"] = lambda counts: weighted_froc(hits, counts.astype(np.float64))[0]
        intervals = bootstrap_ci_weighted(stats, len(truths), n_boot=N_BOOT)
        metrics.update({f"{name}_ci": list(interval) for name, interval in intervals.items()})
    return metrics


def detect_items(run, items, *, drop: bool, progress=iter) -> tuple[list[dict], list[dict]]:
    """(detections, ground truth) of every item, in the pixels of its image as read."""
    from medattn.engine.device import select_device
    from medattn.tasks.detect.data import read_item
    from medattn.tasks.detect.inference import detect_image

    device = select_device("auto")
    for member in run.members:
        member.model.to(device)
    predictions, truths = [], []
    for item in progress(items):
        image, _, _ = read_item(item, drop=drop)
        found = detect_image(run.members, image, where=item.image, device=device)
        predictions.append({k: v.numpy() for k, v in found.items()})
        truths.append({"boxes": item.boxes, "labels": item.labels})
    return predictions, truths


def open_for_run(run, data: str | None):
    """(source, whether it is the run's own data): the run's own opened as training split it."""
    from medattn.tasks.detect.data import open_split
    from medattn.tasks.detect.sources import open_detection

    config = run.config
    path = data or config.data.path
    if Path(path).resolve() == Path(config.data.path).resolve():
        return open_split(config), True
    source = open_detection(
        path,
        class_names=run.class_names,
        box_format=config.data.box_format,
        box_space=config.data.box_space,
        drop_bad_boxes=config.data.drop_bad_boxes,
    )
    return source, False


def evaluate_detection(run_dir: str | Path, *, data: str | None, split: str, tta: bool) -> dict:
    from medattn.progress import track
    from medattn.runs import record_metrics
    from medattn.tune.ensemble import load_ensemble

    if tta:
        raise ConfigError(f"--tta means nothing to a detection run ({run_dir}): boxes are not averaged over flips")
    run = load_ensemble(run_dir)
    source, own = open_for_run(run, data)
    if not own and split == "test" and set(source.splits) == {"train"}:
        split = "all"
        items = source.splits["train"]
    elif split not in source.splits:
        raise DataError(f"{source.path}: no {split!r} split (found: {', '.join(source.splits)})")
    else:
        items = source.splits[split]
    if not items:
        raise DataError(f"{source.path} [{split}]: no images to score")
    predictions, truths = detect_items(
        run, items, drop=run.config.data.drop_bad_boxes, progress=lambda x: track(x, "detecting")
    )
    metrics = {
        "run": str(run.path),
        "data": str(source.path),
        "split": split,
        "task": run.task,
        **score_detections(predictions, truths, run.class_names, ci=True),
    }
    if len(run.members) > 1:
        metrics["ensemble"] = {"members": len(run.members), "combine": "boxes pooled, class-aware NMS"}
    return record_metrics(run.path, split, metrics)


def score_split(run_dir, source, split: str) -> dict:
    """Scalar metrics of a run on one split of `source` (a cross-validation fold's held-out images)."""
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    predictions, truths = detect_items(run, source.splits[split], drop=run.config.data.drop_bad_boxes)
    metrics = score_detections(predictions, truths, run.class_names, ci=False)
    return {k: v for k, v in metrics.items() if isinstance(v, float | int)}


def _fmt(value) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"


def print_report(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['split']} split of {metrics['data']} (n = {metrics['n']} images)")
    for column in ("class", "AP50", "AP50:95"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, value in metrics["ap50_per_class"].items():
        table.add_row(name, _fmt(value), _fmt(metrics["ap_per_class"][name]))
    console = Console()
    console.print(table)
    for key, label in (("map50", "mAP@0.5"), ("map", "mAP@0.5:0.95"), ("froc", "FROC (1/8-8 FP per image)")):
        low, high = metrics.get(f"{key}_ci") or (None, None)
        console.print(f"{label}: {_fmt(metrics[key])} (95% CI {_fmt(low)} – {_fmt(high)})")
    sizes = ", ".join(f"{s} {_fmt(metrics.get(f'ap_{s}'))}" for s in ("small", "medium", "large"))
    console.print(f"AR@100 {_fmt(metrics['ar100'])}; AP by size: {sizes}")
    console.print(f"metrics written to {Path(metrics['run']) / 'metrics.json'}")
