"""Classifying with a trained run: probabilities, the decision threshold, and `predict` on image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.engine.inferers import whole_image


def predict_probs(model, x, *, labels: str, device=None, amp: bool = False, flips=None) -> np.ndarray:
    """Probabilities (N, K) for a standardised input (N, C, *spatial), or (images, clinical vectors (N, F)):
    sigmoid per label, or softmax."""
    from medattn.tasks.classify.loss import probabilities

    return whole_image(model, x, transform=lambda out: probabilities(out, labels), device=device, amp=amp, flips=flips)


def decision_threshold(config, labels: str, val, model, *, device) -> tuple[float | None, str]:
    """The binary decision threshold: fixed, or tuned on the validation split (never on test)."""
    from medattn.config import parse_threshold
    from medattn.tasks.classify.metrics import threshold_for_sensitivity, youden_threshold

    kind, value = parse_threshold(config.train.threshold)
    if labels == "multilabel":
        return 0.5, "fixed 0.5 per label"
    if labels != "binary":
        return None, "argmax"
    if kind == "fixed":
        return value, f"fixed {value}"
    scores = predict_probs(model, val.inputs, labels=labels, device=device)[:, 1]
    truth = val.y.numpy()
    if kind == "youden":
        return float(youden_threshold(truth, scores)), "Youden's J on validation"
    return float(threshold_for_sensitivity(truth, scores, value)), f"sensitivity >= {value} on validation"


def predict_files(run_dir: str | Path, files: list[Path], *, tta: bool = False, series: str | None = None) -> dict:
    """Class and probabilities of each file, from a run or the mean of a fold ensemble's members."""
    from medattn.data.clinical_images import file_patient
    from medattn.data.readers import read_image
    from medattn.engine.loaded import tta_flips
    from medattn.tune.ensemble import load_ensemble, volume_outputs

    run = load_ensemble(run_dir)  # a plain run is an ensemble of one

    def probabilities(member, x):
        flips = tta_flips(member.config, member.spec.spatial_dims) if tta else None
        return predict_probs(member.model, x, labels=member.labels, flips=flips)

    rows = []
    for file in files:
        raw, meta = read_image(file, series_uid=series)
        patient, known = file_patient(file)
        axis, per_slice = volume_outputs(run, raw, meta, probabilities, where=str(file), patient=patient)  # (1|S, K)
        row = {"file": str(file), **decide(per_slice.mean(axis=0), run), "modality": meta.modality, **known}
        if axis is not None:  # the volume's decision is on the mean over slices; the max and every slice beside it
            names = run.class_names
            row["slices"] = {
                "axis": axis,
                "count": len(per_slice),
                "aggregate": "mean over slices",
                "max_probabilities": dict(zip(names, map(float, per_slice.max(axis=0)), strict=True)),
                "per_slice": [dict(zip(names, map(float, p), strict=True)) for p in per_slice],
            }
        rows.append(row)
    return {"run": str(run.path), "task": run.task, "labels": run.labels, "predictions": rows}


def decide(probs: np.ndarray, run) -> dict:
    names = run.class_names
    threshold = run.threshold
    if run.labels == "multilabel":
        cut = 0.5 if threshold is None else threshold
        chosen = [n for n, p in zip(names, probs, strict=True) if p > cut]  # strict, as MedMNIST
        return {"class": chosen, "probabilities": dict(zip(names, map(float, probs), strict=True))}
    index = int(probs[1] > threshold) if run.labels == "binary" and threshold is not None else int(np.argmax(probs))
    return {
        "class": names[index],
        "class_index": index,
        "probabilities": dict(zip(names, map(float, probs), strict=True)),
    }
