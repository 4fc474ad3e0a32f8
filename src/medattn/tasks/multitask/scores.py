"""Each head scored by its own task's metrics: segmentation's Dice / IoU / HD95 (tasks/segment/metrics.py),
classification's AUC, accuracy, ... (tasks/classify/metrics.py), regression's MAE, R², ... (tasks/regress/
metrics.py), with their bootstrap 95% intervals when `ci`. Images without a head's label are left out of it."""

from __future__ import annotations

import numpy as np

from medattn.tasks.multitask.data import HeadSpec
from medattn.tasks.multitask.heads import CLASSIFICATION
from medattn.tasks.multitask.inference import combined_score, primary


def truth_in_units(spec: HeadSpec, encoded: np.ndarray) -> np.ndarray:
    """Encoded labels back to class indices (-1: none) or the column's units (NaN: none)."""
    return encoded if spec.class_names is not None else encoded * spec.std + spec.mean


def head_metrics(spec: HeadSpec, truth: np.ndarray, outputs: list, *, ci: bool) -> dict:
    """One per-image head: truth (N,) in units, outputs N probability vectors or values."""
    from medattn.tasks.classify.metrics import classification_metrics
    from medattn.tasks.regress.metrics import regression_metrics

    known = truth >= 0 if spec.head.kind == CLASSIFICATION else np.isfinite(truth)
    section = {"kind": spec.head.kind, "column": spec.head.column, "unlabelled": int((~known).sum())}
    if not known.any():  # no image of the split carries this head's label: nothing to score
        return {**section, "n": 0}
    if spec.head.kind == CLASSIFICATION:
        probs = np.stack(outputs)[known]  # (n, K)
        labels = "binary" if probs.shape[1] == 2 else "multiclass"
        scored = classification_metrics(truth[known], probs, task=labels, class_names=spec.class_names, ci=ci)
    else:
        pred = np.asarray(outputs, dtype=np.float64)[known, None]
        scored = regression_metrics(truth[known, None], pred, target_names=[spec.head.column], ci=ci)
    return {**section, **scored}


def scalar_scores(sections: dict[str, dict]) -> dict[str, float]:
    """Validation's scalars: each head's primary metric as `<head>/<metric>` and their mean as `score`."""
    firsts = {name: primary(section["kind"], section) for name, section in sections.items()}
    scores = {"score": combined_score(firsts)}
    for name, section in sections.items():
        scores.update({f"{name}/{k}": float(v) for k, v in section.items() if isinstance(v, int | float)})
    return scores
