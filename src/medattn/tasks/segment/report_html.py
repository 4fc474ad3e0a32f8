"""Segmentation's part of `medattn report`: Dice per class with 95% CIs, and overlays of the best, median and
worst cases of the split (by mean foreground Dice): the image, the true outline and the predicted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _middle_slice(image: np.ndarray, truth: np.ndarray, pred: np.ndarray):
    """2D views (C, H, W), (H, W), (H, W): the image itself, or a volume's slice with the most labelled voxels."""
    if truth.ndim == 2:
        return image, truth, pred
    index = int(np.argmax((truth > 0).sum(axis=(0, 1)))) if truth.any() else truth.shape[-1] // 2
    return image[..., index], truth[..., index], pred[..., index]


def report_sections(run_dir: Path, *, data: str | None, split: str) -> list:
    from medattn.engine.device import select_device
    from medattn.explain.overlay import display_image
    from medattn.explain.report.figures import data_uri, img, pyplot
    from medattn.explain.report.page import Section, figure, table
    from medattn.runs import read_json
    from medattn.tasks.segment.cases import read_case
    from medattn.tasks.segment.data import open_split
    from medattn.tasks.segment.inference import ensemble_segment
    from medattn.tasks.segment.report import evaluate_segmentation
    from medattn.tune.ensemble import load_ensemble

    recorded = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    metrics = recorded.get(split) if data is None else None
    if metrics is None or "cases" not in metrics:
        metrics = evaluate_segmentation(run_dir, data=data, split=split)
    rows = []
    for name, value in metrics["dice_per_class"].items():
        ci = metrics.get("dice_per_class_ci", {}).get(name)
        rows.append((name, f"{value:.4f}", f"{ci[0]:.4f} – {ci[1]:.4f}" if ci else ""))
    sections = [
        Section(
            f"Evaluation: {metrics['split']} split (n = {len(metrics['cases'])})",
            table(rows, ("class", "Dice", "95% CI")) + f"<p>mean Dice {metrics['dice_mean']:.4f}</p>",
        )
    ]
    cases = sorted(metrics["cases"], key=lambda c: np.nanmean(list(c["dice"].values()) or [np.nan]))
    if not cases or data is not None:
        return sections
    picks = {"worst": cases[0], "median": cases[len(cases) // 2], "best": cases[-1]}
    run = load_ensemble(run_dir)
    by_name = {case.name: case for case in open_split(run.config).splits.get(metrics["split"], [])}
    binary_255 = bool(run.members[0].card["input"].get("binary_255", False))
    plt, figures = pyplot(), []
    for kind, row in picks.items():
        if row["case"] not in by_name:
            continue
        case = by_name[row["case"]]
        item = read_case(case, binary_255=binary_255)
        cpu, patient = select_device("cpu"), case.patient_id  # as evaluate scored it: with its clinical values
        pred = ensemble_segment(run.members, item.image, item.meta, device=cpu, where=row["case"], patient=patient)
        image, truth, predicted = _middle_slice(item.image, item.mask.reshape(pred.shape), pred)
        fig, ax = plt.subplots(figsize=(3.4, 3.4))
        picture = display_image(image)
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        if truth.any():
            ax.contour(truth > 0, levels=[0.5], colors="lime", linewidths=1)
        if predicted.any():
            ax.contour(predicted > 0, levels=[0.5], colors="red", linewidths=1)
        ax.set_axis_off()
        dice = ", ".join(f"{k} {v:.3f}" for k, v in row["dice"].items())
        figures.append(
            figure(
                img(data_uri(fig), f"{kind} case"), f"{kind}: {row['case']} (Dice {dice}); green true, red predicted"
            )
        )
    sections.append(Section("Best, median and worst cases", f"<div class='grid'>{''.join(figures)}</div>"))
    return sections
