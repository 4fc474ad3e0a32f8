"""Detection's part of `medattn report` and of `explain --data`: the split's images as cases, the COCO metrics
with their CIs, FROC sensitivities, and the detections of a few test images drawn on them.

A detector's output is boxes, not one score per class or per voxel, so the saliency methods of `medattn explain`
do not apply to it (what to explain would be one box's score; not built): the report shows the boxes instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medattn.errors import ConfigError

SHOWN = 6  # test images drawn in the report


def no_saliency(run: str | Path) -> ConfigError:
    return ConfigError(
        f"{run} is a detection run: its output is boxes, and medattn explain's maps (attention, CAMs, occlusion, "
        "integrated gradients) explain one class score or region; see its detections with medattn predict or "
        "medattn report"
    )


def detection_cases(run_dir: Path, *, data: str | None, split: str) -> Iterator:
    """ExplainCase for each image of the split (what export calibrates on), its boxes summarised as the truth."""
    from medattn.explain.case import ExplainCase
    from medattn.tasks.detect.data import read_item
    from medattn.tasks.detect.report import open_for_run
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    source, _ = open_for_run(run, data)
    items = source.splits.get(split) or source.splits.get("train", [])
    for index, item in enumerate(items):
        image, meta, _ = read_item(item, drop=run.config.data.drop_bad_boxes)
        truth = f"{len(item.boxes)} box(es)"
        yield ExplainCase(f"{Path(item.image).stem}-{index}", image, meta, truth)


def report_sections(run_dir: Path, *, data: str | None, split: str) -> list:
    import base64
    import tempfile

    from medattn.engine.device import select_device
    from medattn.explain.report.page import Section, figure, table
    from medattn.tasks.detect.data import read_item
    from medattn.tasks.detect.inference import detect_image
    from medattn.tasks.detect.overlay import overlay
    from medattn.tasks.detect.report import evaluate_detection, open_for_run
    from medattn.tune.ensemble import load_ensemble

    metrics = evaluate_detection(run_dir, data=data, split=split, tta=False)
    rows = []
    for key, label in (("map50", "mAP@0.5"), ("map", "mAP@0.5:0.95"), ("ar100", "AR@100"), ("froc", "FROC")):
        if key in metrics:
            ci = metrics.get(f"{key}_ci")
            rows.append((label, f"{metrics[key]:.4f}", f"{ci[0]:.4f} – {ci[1]:.4f}" if ci else ""))
    rows += [(f"AP@0.5 {name}", f"{value:.4f}", "") for name, value in metrics.get("ap50_per_class", {}).items()]
    rows += [
        (f"sensitivity at {rate} FP/image", f"{v:.4f}", "") for rate, v in metrics.get("froc_sensitivity", {}).items()
    ]
    body = table(rows, ("metric", "value", "95% CI"))
    run = load_ensemble(run_dir)
    source, _ = open_for_run(run, data)
    items = (source.splits.get(metrics["split"]) or source.splits.get("train", []))[:SHOWN]
    figures, device = [], select_device("auto")
    with tempfile.TemporaryDirectory() as work:
        for index, item in enumerate(items):
            image, _, _ = read_item(item, drop=run.config.data.drop_bad_boxes)
            found = {k: v.numpy() for k, v in detect_image(run.members, image, where=item.image, device=device).items()}
            target = Path(work) / f"{index}.png"
            overlay(image, found, run.class_names, target)
            uri = "data:image/png;base64," + base64.b64encode(target.read_bytes()).decode()
            caption = f"{Path(item.image).name}: {len(found['boxes'])} found, {len(item.boxes)} true"
            figures.append(figure(f'<img src="{uri}" alt="{Path(item.image).name}">', caption))
    body += "<div class='grid'>" + "".join(figures) + "</div>"
    return [Section(f"Evaluation: {metrics['split']} split (n = {metrics.get('n', len(items))})", body)]
