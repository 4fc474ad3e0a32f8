"""`evaluate` for segmentation runs: every case of a split segmented whole, scored on its own grid in mm.

Per class Dice, IoU, HD95 and average symmetric surface distance from evaluate/segmentation.py, means over
cases with bootstrap confidence intervals. The split is rebuilt exactly as training carved it (the run's
seed and fractions). Data other than the run's own that declares no splits is scored whole ("all"). A fold
ensemble of a cross-validation directory is scored by the mean softmax of its members.
"""

from __future__ import annotations

from pathlib import Path

from medattn.errors import DataError


def evaluate_segmentation(run_dir: str | Path, *, data: str | None = None, split: str = "test", tta: bool = False):
    """Score a run, or a fold ensemble (mean softmax of its members), on a split; recorded in metrics.json."""
    from medattn.runs import record_metrics
    from medattn.tasks.segment.data import open_split
    from medattn.tasks.segment.sources import open_segmentation
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    names, config = run.class_names, run.config
    path = data or config.data.path
    own = Path(path).resolve() == Path(config.data.path).resolve()
    source = open_split(config) if own else open_segmentation(path)  # the run's own data: split as training did
    if source.class_names is not None and len(source.class_names) != len(names):
        raise DataError(f"{path}: declares {len(source.class_names)} classes, the run was trained on {len(names)}")
    if not own and split == "test" and set(source.splits) == {"train"}:
        split, cases = "all", source.splits["train"]
    else:
        if split not in source.splits:
            raise DataError(f"{path}: no {split!r} split (found: {', '.join(source.splits)})")
        cases = source.splits[split]
    metrics = {
        "run": str(run.path),
        "data": str(path),
        "split": split,
        "task": run.task,
        "tta": tta,
        **score_cases(run, cases, where=f"{path} [{split}]", tta=tta),
    }
    if len(run.members) > 1:
        metrics["ensemble"] = {"members": len(run.members), "combine": "mean softmax"}
    return record_metrics(run.path, f"{split}+tta" if tta else split, metrics)


def score_cases(run, cases: list, *, where: str, tta: bool = False) -> dict:
    """Dice, IoU, HD95 and ASSD per class (means over cases with bootstrap CIs), pixel accuracy, per case rows.

    `run` is a run or ensemble directory, or a loaded ensemble.
    """
    from medattn.engine.device import select_device
    from medattn.progress import track
    from medattn.tasks.segment.cases import check_labels, read_case
    from medattn.tasks.segment.inference import SegmentationPlan, ensemble_segment
    from medattn.tasks.segment.metrics import aggregate, by_patient, case_metrics
    from medattn.tune.ensemble import load_ensemble

    device = select_device("auto")
    if isinstance(run, str | Path):
        run = load_ensemble(run, device=device)
    plan = SegmentationPlan.from_card(run.members[0].card)
    names = run.class_names
    if not cases:
        raise DataError(f"{where}: no cases to score")
    scores, per_case = [], []
    for case in track(cases, "segmenting cases"):
        item = read_case(case, binary_255=plan.binary_255)
        check_labels(item, plan.num_classes, names)
        where, patient = case.images[0], case.patient_id
        pred = ensemble_segment(
            run.members, item.image, item.meta, device=device, where=where, tta=tta, patient=patient
        )
        truth = item.mask.reshape(pred.shape)  # a one-slice NIfTI: (X, Y, 1) -> (X, Y)
        result = case_metrics(pred, truth, num_classes=plan.num_classes, spacing=item.meta.spacing[: pred.ndim])
        scores.append(result)
        accuracy = float((pred == truth).mean())  # every class, background included
        per_case.append(
            {"case": case.name, "dice": {names[c]: r["dice"] for c, r in result.items()}, "pixel_accuracy": accuracy}
        )
    summary = {
        **aggregate(scores, class_names=names),
        "pixel_accuracy": sum(c["pixel_accuracy"] for c in per_case) / len(per_case),
        "cases": per_case,
    }
    patients = [case.patient_id for case in cases]
    if all(patients) and len(set(patients)) < len(patients):  # slices of volumes: also the Dice per patient
        summary["patients"] = by_patient(scores, patients, class_names=names)
    return summary


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
    if "patients" in metrics:
        patients = metrics["patients"]
        lo, hi = patients["dice_mean_ci"]
        console.print(
            f"Dice per patient (slices taken together, n = {patients['n']}): {patients['dice_mean']:.4f} "
            f"(95% CI {lo:.4f} – {hi:.4f})"
        )
    console.print(f"metrics written to {Path(metrics['run']) / 'metrics.json'}")
