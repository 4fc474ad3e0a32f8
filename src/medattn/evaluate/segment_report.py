"""`evaluate` for segmentation runs: every case of a split segmented whole, scored on its own grid in mm.

Per class Dice, IoU, HD95 and average symmetric surface distance from evaluate/segmentation.py, means over
cases with bootstrap confidence intervals. The split is rebuilt exactly as training carved it (the run's
seed and fractions). Data other than the run's own that declares no splits is scored whole ("all").
"""

from __future__ import annotations

from pathlib import Path

from medattn.errors import DataError


def evaluate_segmentation(run_dir: str | Path, *, data: str | None = None, split: str = "test") -> dict:
    from medattn.data.segmentation import ensure_case_splits, open_segmentation
    from medattn.data.segmentation_load import check_labels, read_case
    from medattn.evaluate.segmentation import aggregate, case_metrics
    from medattn.inference import load_run
    from medattn.progress import track
    from medattn.runs import atomic_write_json, read_json
    from medattn.segment_inference import SegmentationPlan, segment
    from medattn.train.device import select_device

    device = select_device("auto")
    run = load_run(run_dir, device=device)
    plan, names, config = SegmentationPlan.from_card(run.card), run.card["class_names"], run.config
    path = data or config.data.path
    source = open_segmentation(path)
    if source.class_names is not None and len(source.class_names) != len(names):
        raise DataError(f"{path}: declares {len(source.class_names)} classes, the run was trained on {len(names)}")
    own = Path(path).resolve() == Path(config.data.path).resolve()
    if not own and split == "test" and set(source.splits) == {"train"}:
        split, cases = "all", source.splits["train"]
    else:
        if own:
            fractions = {"val_fraction": config.data.val_fraction, "test_fraction": config.data.test_fraction}
            ensure_case_splits(source, seed=config.train.seed, **fractions)
        if split not in source.splits:
            raise DataError(f"{path}: no {split!r} split (found: {', '.join(source.splits)})")
        cases = source.splits[split]
    scores, per_case = [], []
    for case in track(cases, f"segmenting {split} cases"):
        item = read_case(case, binary_255=plan.binary_255)
        check_labels(item, plan.num_classes, names)
        pred = segment(run.model, item.image, item.meta, plan, device=device, where=case.images[0])
        truth = item.mask.reshape(pred.shape)  # a one-slice NIfTI: (X, Y, 1) -> (X, Y)
        result = case_metrics(pred, truth, num_classes=plan.num_classes, spacing=item.meta.spacing[: pred.ndim])
        scores.append(result)
        accuracy = float((pred == truth).mean())  # every class, background included
        per_case.append(
            {"case": case.name, "dice": {names[c]: r["dice"] for c, r in result.items()}, "pixel_accuracy": accuracy}
        )
    if not scores:
        raise DataError(f"{path}: the {split!r} split has no cases")
    metrics = {
        "run": str(run.path),
        "data": str(path),
        "split": split,
        "task": "segmentation",
        **aggregate(scores, class_names=names),
        "pixel_accuracy": sum(c["pixel_accuracy"] for c in per_case) / len(per_case),
        "cases": per_case,
    }
    recorded = read_json(run.path / "metrics.json") if (run.path / "metrics.json").is_file() else {}
    recorded[split] = metrics
    atomic_write_json(run.path / "metrics.json", recorded)
    return metrics


def print_segmentation_report(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['split']} split of {metrics['data']} (n = {metrics['n']} cases)")
    for column in ("class", "Dice", "95% CI", "IoU", "HD95 mm", "ASSD mm"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, dice in metrics["dice_per_class"].items():
        lo, hi = metrics["dice_ci_per_class"][name]
        table.add_row(
            name,
            f"{dice:.4f}",
            f"{lo:.4f} – {hi:.4f}",
            f"{metrics['iou_per_class'][name]:.4f}",
            f"{metrics['hd95_mm_per_class'][name]:.2f}",
            f"{metrics['assd_mm_per_class'][name]:.2f}",
        )
    lo, hi = metrics["dice_mean_ci"]
    table.add_row("mean", f"{metrics['dice_mean']:.4f}", f"{lo:.4f} – {hi:.4f}", "", "", "")
    console = Console()
    console.print(table)
    console.print(f"metrics written to {Path(metrics['run']) / 'metrics.json'}")
