"""Using a finished MIL run: the bag decision threshold, `evaluate` (one prediction per bag, classification's
metrics with bootstrap CIs over bags), `predict` on new bags with each image's attention weight, `data inspect`
and the report's section. A cross-validation directory's fold runs are averaged (probabilities and weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.clinical import ClinicalSpec, read_table
from medattn.data.clinical_images import left_out
from medattn.errors import DataError
from medattn.runs import record_metrics
from medattn.tasks.mil.predict import attention_rows, bag_outputs

TOP_INSTANCES = 5  # the most attended images listed per bag in evaluate's JSON


def bag_threshold(config, labels: str, val, model, *, device) -> tuple[float | None, str]:
    """The binary decision threshold on bag probabilities: fixed, or tuned on the validation bags."""
    from medattn.config import parse_threshold
    from medattn.tasks.classify.metrics import threshold_for_sensitivity, youden_threshold

    kind, value = parse_threshold(config.train.threshold)
    if labels != "binary":
        return None, "argmax"
    if kind == "fixed":
        return value, f"fixed {value}"
    scores = bag_outputs(model, val, device=device)[0][:, 1]
    if kind == "youden":
        return float(youden_threshold(val.y.numpy(), scores)), "Youden's J on validation bags"
    return float(threshold_for_sensitivity(val.y.numpy(), scores, value)), f"sensitivity >= {value} on validation bags"


def open_like_training(run, data: str | None):
    """(source, path): `data` (default the run's own, its bags split exactly as training carved them)."""
    from medattn.tasks.mil.sources import ensure_splits, open_bags

    config = run.config
    path = data or config.data.path
    source = open_bags(path, column=config.data.bag)
    if len(source.class_names) != len(run.class_names):
        raise DataError(f"{path}: {len(source.class_names)} classes, the run was trained on {run.class_names}")
    if data is None or Path(data).resolve() == Path(config.data.path).resolve():
        fractions = {"val_fraction": config.data.val_fraction, "test_fraction": config.data.test_fraction}
        ensure_splits(source, seed=config.train.seed, **fractions)
    return source, path


def split_outputs(run, source, split: str):
    """(truth (B,), probabilities (B, K), attention weights per bag, the bags' tensors), the mean over members."""
    from medattn.tasks.mil.data import bag_tensors

    probs, weights, bags = [], [], None
    for member in run.members:
        bags = bag_tensors(source, split, member.intensity, member.size)
        _check_channels(member, bags.x.shape[1:], where=f"{source.path} [{split}]")
        if member.card.get("clinical") and not left_out():  # left out: every bag's values unknown
            spec = ClinicalSpec.from_card(member.card["clinical"])
            bags.join_clinical(spec, read_table(spec.path))
        p, w = bag_outputs(member.model, bags)
        probs.append(p)
        weights.append(w)
    mean_weights = [np.mean([w[b] for w in weights], axis=0) for b in range(len(bags))]
    return bags.y.numpy(), np.mean(probs, axis=0), mean_weights, bags


def scored_split(run_dir, data: str | None, split: str):
    """(run, data path, split_outputs) of a run or fold ensemble on a split of `data` (default its own)."""
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    source, path = open_like_training(run, data)
    if split not in source.splits:
        raise DataError(f"{path}: no {split!r} split (found: {', '.join(source.splits)})")
    return run, path, split_outputs(run, source, split)


def score_split(run_dir, source, split: str, *, ci: bool = True) -> dict:
    from medattn.tasks.classify.metrics import classification_metrics
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    truth, probs, _, _ = split_outputs(run, source, split)
    return classification_metrics(truth, probs, task=run.labels, threshold=run.threshold, ci=ci)


def evaluate_run(run_dir, *, data: str | None = None, split: str = "test") -> dict:
    from medattn.tasks.classify.metrics import classification_metrics

    run, path, (truth, probs, weights, bags) = scored_split(run_dir, data, split)
    names = run.class_names
    metrics = classification_metrics(truth, probs, task=run.labels, threshold=run.threshold, class_names=names)
    rows = [
        {
            "bag": bags.names[b],
            "label": names[int(truth[b])],
            "probabilities": dict(zip(names, map(float, probs[b]), strict=True)),
            "instances": len(weights[b]),
            "attention": attention_rows(bags.files[b], weights[b], top=TOP_INSTANCES),
        }
        for b in range(len(truth))
    ]
    metrics = {
        "run": str(run.path),
        "data": str(path),
        "split": split,
        "labels": run.labels,
        "unit": "bags",
        "bag_column": run.config.data.bag,
        **metrics,
        "task": run.task,  # after the metrics, whose "task" is the label type
        "bags": rows,
    }
    if len(run.members) > 1:
        metrics["ensemble"] = {"members": len(run.members), "threshold_rule": run.threshold_rule}
    return record_metrics(run.path, split, metrics)


def _check_channels(run, shape, *, where: str) -> None:
    model = run.card["model"]
    if len(shape) - 1 != model["spatial_dims"] or shape[0] != model["in_channels"]:
        raise DataError(
            f"{where}: images of {shape[0]} channel(s), {len(shape) - 1}D, but the model takes "
            f"{model['in_channels']} channel(s), {model['spatial_dims']}D"
        )


def bag_files(item: Path) -> list[Path]:
    """The images of one bag given to predict: a folder's image files (sorted), or the file itself."""
    from medattn.data.readers import SUPPORTED_SUFFIXES

    if not item.is_dir():
        return [item]
    files = sorted(
        p for p in item.iterdir() if not p.name.startswith(".") and p.name.lower().endswith(SUPPORTED_SUFFIXES)
    )
    if not files:
        raise DataError(f"{item}: a bag folder with no image files ({', '.join(SUPPORTED_SUFFIXES)})")
    return files


def predict_bags(run_dir, items: list[Path], *, series: str | None = None) -> dict:
    """One bag per argument (a folder of images, or one image or volume, whose slices a 2D model takes as the
    instances): its class, probabilities and every instance's attention weight."""
    import torch

    from medattn.data.readers import read_image
    from medattn.tasks.classify.predict import decide
    from medattn.tasks.mil.data import BagTensors
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    rows = []
    for item in items:
        files = bag_files(Path(item))
        probs, weights, names = [], [], []
        for member in run.members:
            parts, names = [], []
            for file in files:
                raw, meta = read_image(file, series_uid=series)
                axis, x = member.spec.batch(raw, meta, where=str(file))  # (1 or slices, C, *S)
                parts.append(x)
                names += [str(file)] if axis is None else [f"{file}[slice {k}]" for k in range(len(x))]
            x = torch.cat(parts)
            patient = Path(item).name if Path(item).is_dir() else Path(item).name.split(".")[0]
            bag = BagTensors(x, [0, len(x)], torch.zeros(1, dtype=torch.int64), [str(item)], [names], [patient])
            clinical = _bag_clinical(member, bag)
            p, w = bag_outputs(member.model, bag)
            probs.append(p[0])
            weights.append(w[0])
        mean = np.mean(probs, axis=0)
        rows.append(
            {
                "bag": str(item),
                **decide(mean, run),
                "instances": len(names),
                "attention": attention_rows(names, np.mean(weights, axis=0)),
                **({"clinical": clinical} if clinical else {}),
            }
        )
    return {"run": str(run.path), "task": run.task, "labels": run.labels, "predictions": rows}


def _bag_clinical(member, bag) -> str | None:
    """A predicted bag's clinical values: the row of the run's table (or predict's --clinical) whose patient_id is
    the bag's folder (or file) name; a bag the table does not list has every value unknown, as in training. Says
    which."""
    if not member.card.get("clinical"):
        return None
    if left_out():
        return "left out (--missing clinical): every value unknown"
    from medattn.engine.inputs import CLINICAL

    spec = ClinicalSpec.from_card(member.card["clinical"])
    path = CLINICAL.get() or spec.path  # predict --clinical: another table with the same columns
    table = read_table(path)
    bag.join_clinical(spec, table)
    found = bag.patients[0] in table
    return f"{path} row {bag.patients[0]}" if found else f"not in {path}: every value unknown"


def print_report(metrics: dict) -> None:
    from medattn.tasks.classify.report import print_report as print_classification

    print_classification(metrics)
    for row in metrics["bags"]:
        top = ", ".join(f"{Path(a['file']).name} {a['weight']:.2f}" for a in row["attention"][:3])
        print(f"  {row['bag']} ({row['label']}, {row['instances']} images): most attended {top}")


def inspect_bags(config) -> dict:
    from medattn.tasks.mil.sources import open_bags

    source = open_bags(config.data.path, column=config.data.bag)
    report = {"path": source.path, "kind": source.kind, "task": "mil", "bag_column": source.column}
    report["class_names"] = source.class_names
    report["splits"] = {}
    for name, bags in source.splits.items():
        sizes = [len(b.paths) for b in bags]
        report["splits"][name] = {
            "bags": len(bags),
            "images": int(sum(sizes)),
            "class_counts": source.class_counts(name),
            "images_per_bag": {"min": min(sizes), "median": float(np.median(sizes)), "max": max(sizes)},
        }
    patients = {}
    for name, bags in source.splits.items():
        for bag in bags:
            patients.setdefault(bag.patient, set()).add(name)
    report["patients_in_more_than_one_split"] = sorted(p for p, s in patients.items() if len(s) > 1)
    return report


def print_inspect(report: dict) -> None:
    print(f"{report['path']} (bags by {report['bag_column']}; classes {', '.join(report['class_names'])})")
    for name, row in report["splits"].items():
        per = row["images_per_bag"]
        print(
            f"  {name:<5} {row['bags']} bags, {row['images']} images (per bag {per['min']}..{per['max']}, "
            f"median {per['median']:g}); bags per class {row['class_counts']}"
        )
    if report["patients_in_more_than_one_split"]:
        print(f"  patients in more than one split: {', '.join(report['patients_in_more_than_one_split'])}")


def report_sections(run_dir: Path, *, data: str | None, split: str) -> list:
    from medattn.explain.report.page import Section, table

    metrics = evaluate_run(run_dir, data=data, split=split)
    rows = []
    for key in ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1_macro"):
        if key in metrics:
            ci = metrics.get(f"{key}_ci")
            rows.append((key, f"{metrics[key]:.4f}", f"{ci[0]:.4f} – {ci[1]:.4f}" if ci else ""))
    bags = [
        (row["bag"], row["label"], f"{max(row['probabilities'].values()):.3f}", Path(row["attention"][0]["file"]).name)
        for row in metrics["bags"]
    ]
    return [
        Section(f"Evaluation: {split} split, {len(bags)} bags", table(rows, ("metric", "value", "95% CI"))),
        Section("Bags and their most attended image", table(bags, ("bag", "label", "top probability", "image"))),
    ]
