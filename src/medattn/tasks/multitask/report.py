"""`evaluate`, `predict`, `data inspect` and `report` for multi-task runs.

`evaluate` reads every image of a split whole, runs the run (or the mean of a fold ensemble's members) and scores
each head by its own task's metrics with bootstrap 95% intervals: one JSON with a section per head under `heads`,
and `score`, the mean of their primary metrics. The split is rebuilt exactly as training carved it. `predict`
writes the masks as segmentation does (`<name>_mask.png` / `.nii.gz` on the input's grid) and every head's output
per image in `predictions.json` and `predictions.csv` beside them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from medattn.errors import DataError, RunDirError
from medattn.tasks.multitask.data import HeadSpec, encode_split
from medattn.tasks.multitask.heads import SEGMENTATION


def _specs(run) -> list[HeadSpec]:
    return [HeadSpec.from_card(card) for card in run.members[0].card["heads"]]


def score_cases(run, cases: list, *, where: str, ci: bool = True) -> dict:
    """{"n", "score", "heads": {head: its task's metrics}} for labelled cases; `run` a directory or an ensemble."""
    from medattn.engine.device import select_device
    from medattn.progress import track
    from medattn.tasks.multitask.inference import combined_score, ensemble_outputs, primary
    from medattn.tasks.multitask.scores import head_metrics, truth_in_units
    from medattn.tasks.segment.cases import check_labels, read_case
    from medattn.tasks.segment.inference import SegmentationPlan
    from medattn.tasks.segment.metrics import aggregate, by_patient, case_metrics
    from medattn.tune.ensemble import load_ensemble

    device = select_device("auto")
    if isinstance(run, str | Path):
        run = load_ensemble(run, device=device)
    if not cases:
        raise DataError(f"{where}: no cases to score")
    card = run.members[0].card
    plan, specs, names = SegmentationPlan.from_card(card), _specs(run), card["head_names"]
    rows, masks, outputs = [], [], {s.head.name: [] for s in specs}
    for case in track(cases, "reading and predicting images"):
        item = read_case(case, binary_255=plan.binary_255)
        check_labels(item, plan.num_classes, run.class_names)
        result = ensemble_outputs(run.members, item.image, item.meta, device=device, where=case.images[0])
        masks.append(item.mask)
        if SEGMENTATION in result:
            pred = result[SEGMENTATION]
            truth = item.mask.reshape(pred.shape)
            spacing = item.meta.spacing[: pred.ndim]
            rows.append(case_metrics(pred, truth, num_classes=plan.num_classes, spacing=spacing))
        for spec in specs:
            outputs[spec.head.name].append(result[spec.head.name])
    sections = {}
    if rows:
        segmentation = aggregate(rows, class_names=run.class_names) if ci else {}
        if not ci:
            segmentation["dice_mean"] = float(np.mean([[r[c]["dice"] for c in sorted(r)] for r in rows]))
        sections[SEGMENTATION] = {"kind": SEGMENTATION, "dice": segmentation["dice_mean"], **segmentation}
        patients = [case.patient_id for case in cases]
        if ci and all(patients) and len(set(patients)) < len(patients):  # slices of volumes: Dice per patient too
            sections[SEGMENTATION]["patients"] = by_patient(rows, patients, class_names=run.class_names)
    labels = encode_split(specs, cases, masks, where=where)
    for spec in specs:
        truth = truth_in_units(spec, labels[spec.head.name])
        sections[spec.head.name] = head_metrics(spec, truth, outputs[spec.head.name], ci=ci)
    ordered = {name: sections[name] for name in names}
    score = combined_score({n: primary(s["kind"], s) for n, s in ordered.items()})
    return {"n": len(cases), "score": score, "heads": ordered}


def evaluate_run(run_dir, *, data: str | None, split: str) -> dict:
    from medattn.runs import record_metrics
    from medattn.tasks.multitask.heads import parse_heads
    from medattn.tasks.multitask.sources import open_multitask, open_split
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    config = run.config
    path = data or config.data.path
    own = Path(path).resolve() == Path(config.data.path).resolve()
    source = open_split(config) if own else open_multitask(path, parse_heads(config.data.heads))
    if not own and split == "test" and set(source.splits) == {"train"}:
        split, cases = "all", source.splits["train"]
    elif split not in source.splits:
        raise DataError(f"{path}: no {split!r} split (found: {', '.join(source.splits)})")
    else:
        cases = source.splits[split]
    metrics = {
        "run": str(run.path),
        "data": str(path),
        "split": split,
        "task": run.task,
        **score_cases(run, cases, where=f"{path} [{split}]"),
    }
    if len(run.members) > 1:
        metrics["ensemble"] = {"members": len(run.members), "combine": "mean of member probabilities and values"}
    return record_metrics(run.path, split, metrics)


def predict_files(run_dir, files: list[Path], *, out_dir: Path | None, overwrite: bool, series: str | None) -> dict:
    from medattn.data.readers import read_image, write_image
    from medattn.engine.device import select_device
    from medattn.runs import atomic_write_json, atomic_write_text
    from medattn.tasks.multitask.inference import ensemble_outputs
    from medattn.tasks.segment.predict import label_volumes, mask_path
    from medattn.tune.ensemble import load_ensemble

    device = select_device("auto")
    run = load_ensemble(run_dir, device=device)
    out_dir = Path(out_dir) if out_dir is not None else run.path / "predictions"
    specs = _specs(run)
    segments = SEGMENTATION in run.members[0].card["head_names"]
    targets = [mask_path(Path(f), out_dir) for f in files] if segments else []
    written = [*targets, out_dir / "predictions.json", out_dir / "predictions.csv"]
    existing = [str(t) for t in written if t.exists()]
    if existing and not overwrite:
        raise RunDirError(f"{existing[0]} already exists ({len(existing)} file(s) in all); pass --overwrite to replace")
    if len(set(targets)) != len(targets):
        raise DataError(f"two inputs would write the same mask name in {out_dir}; predict them separately")
    rows = []
    for i, file in enumerate(files):
        image, meta = read_image(file, series_uid=series)
        result = ensemble_outputs(run.members, image, meta, device=device, where=str(file))
        row: dict = {"file": str(file)}
        if segments:
            labels = result[SEGMENTATION]
            stored = labels.reshape(image.shape[1:])
            write_image(targets[i], stored[None], meta)
            volumes, unit = label_volumes(labels, meta.spacing[: labels.ndim], run.class_names)
            row.update({"mask": str(targets[i]), "volumes": volumes, "unit": unit})
        for spec in specs:
            value = result[spec.head.name]
            if spec.class_names is not None:
                probs = dict(zip(spec.class_names, map(float, value), strict=True))
                row[spec.head.name] = {"label": spec.class_names[int(np.argmax(value))], "probabilities": probs}
            else:
                row[spec.head.name] = {"value": float(value)}
        rows.append(row)
    payload = {"run": str(run.path), "task": run.task, "out_dir": str(out_dir), "predictions": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "predictions.json", payload)
    atomic_write_text(out_dir / "predictions.csv", _table(rows, specs))
    return payload


def _table(rows: list[dict], specs: list[HeadSpec]) -> str:
    """One line per image: file, mask, then each head's label (and its probabilities) or value."""
    columns = ["file", *(["mask"] if rows and "mask" in rows[0] else [])]
    for spec in specs:
        name = spec.head.name
        columns += [name] if spec.class_names is None else [name, *(f"{name}:p_{c}" for c in spec.class_names)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        line = [row["file"], *([row["mask"]] if "mask" in row else [])]
        for spec in specs:
            cell = row[spec.head.name]
            if spec.class_names is None:
                line.append(f"{cell['value']:.6g}")
            else:
                line += [cell["label"], *(f"{cell['probabilities'][c]:.6g}" for c in spec.class_names)]
        writer.writerow(line)
    return buffer.getvalue()


def _number(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.4f}"


def print_report(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"{metrics['split']} split of {metrics['data']} (n = {metrics['n']}): score {_number(metrics['score'])}"
    table = Table(title=title)
    for column in ("head", "metric", "value", "95% CI"):
        table.add_column(column, justify="left" if column in ("head", "metric") else "right")
    keys = {"segmentation": ("dice_mean",), "classification": ("auc", "acc"), "regression": ("mae", "r2")}
    for name, section in metrics["heads"].items():
        for key in keys[section["kind"]]:
            ci = section.get(f"{key}_ci")
            table.add_row(name, key, _number(section.get(key)), f"{_number(ci[0])} – {_number(ci[1])}" if ci else "")
    console = Console()
    console.print(table)
    console.print(f"metrics written to {Path(metrics['run']) / 'metrics.json'}")


def print_predictions(payload: dict) -> None:
    for row in payload["predictions"]:
        parts = [f"mask {row['mask']}"] if "mask" in row else []
        for name, cell in row.items():
            if isinstance(cell, dict) and ("label" in cell or "value" in cell):
                parts.append(f"{name} {cell['label']}" if "label" in cell else f"{name} {cell['value']:.4g}")
        print(f"{row['file']}: {', '.join(parts)}")
    print(f"per-image outputs: {Path(payload['out_dir']) / 'predictions.csv'}")


def inspect_heads(config) -> dict:
    """Per split, carved as training carves it: images, patients, and per head the labelled images and their
    classes (or the values' range)."""
    from medattn.tasks.multitask.heads import parse_heads
    from medattn.tasks.multitask.sources import open_split

    heads = parse_heads(config.data.heads)
    source = open_split(config)
    report: dict = {"path": source.path, "kind": source.kind, "heads": [h.name for h in heads], "splits": {}}
    report["notes"] = list(source.notes)
    for split, cases in source.splits.items():
        section: dict = {"cases": len(cases), "patients": len({c.patient_id for c in cases if c.patient_id})}
        for head in heads:
            if head.column is None or head.derived:
                continue
            cells = [c.values[head.column] for c in cases if c.values[head.column]]
            counts = {value: cells.count(value) for value in sorted(set(cells))} if head.kind != "regression" else None
            numbers = [float(v) for v in cells] if counts is None else []
            section[head.name] = {"labelled": len(cells), "unlabelled": len(cases) - len(cells)}
            section[head.name].update({"classes": counts} if counts is not None else {})
            if numbers:
                section[head.name].update({"min": min(numbers), "max": max(numbers), "mean": float(np.mean(numbers))})
        report["splits"][split] = section
    return report


def print_inspect(report: dict) -> None:
    print(f"{report['path']} ({report['kind']}): heads {', '.join(report['heads'])}")
    for split, section in report["splits"].items():
        print(f"  {split}: {section['cases']} images of {section['patients']} patients")
        for name, row in section.items():
            if isinstance(row, dict):
                extra = row.get("classes") or {k: row[k] for k in ("min", "max", "mean") if k in row}
                print(f"    {name}: {row['labelled']} labelled, {row['unlabelled']} without a label; {extra}")


def report_sections(run_dir: Path, *, data: str | None, split: str) -> list:
    from medattn.explain.report.page import Section, table

    metrics = evaluate_run(run_dir, data=data, split=split)
    rows = []
    for name, section in metrics["heads"].items():
        for key in ("dice_mean", "auc", "acc", "mae", "r2"):
            if key in section:
                ci = section.get(f"{key}_ci")
                rows.append((name, key, _number(section[key]), f"{_number(ci[0])} – {_number(ci[1])}" if ci else ""))
    body = table(rows, ("head", "metric", "value", "95% CI"))
    return [Section(f"Evaluation: {split} split (n = {metrics['n']}), score {_number(metrics['score'])}", body)]
