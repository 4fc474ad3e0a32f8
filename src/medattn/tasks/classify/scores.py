"""Validation scores of a classifier, per image or per bag (tasks/mil/): the metrics, the loss from the
probabilities, the columns kept in history.csv and the progress line."""

from __future__ import annotations

import math

import numpy as np


def validation_scores(truth: np.ndarray, probs: np.ndarray, *, labels: str, loss_fn) -> dict:
    """Scalar scores of (N, K) probabilities against the truth, with `loss_fn.base`'s loss."""
    import torch

    from medattn.tasks.classify.metrics import classification_metrics

    scores = classification_metrics(truth, probs, task=labels, ci=False)
    with torch.no_grad():  # loss from probabilities: the same value the loss gives on logits for CE
        p = torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7)
        logits = p.log() if labels != "multilabel" else (p / (1 - p)).log()
        scores["loss"] = float(loss_fn.base(logits.float(), torch.from_numpy(truth)))
    return {k: v for k, v in scores.items() if isinstance(v, int | float | str)}


class ClassScores:
    """history_scores and progress_text of a task scored by classification's metrics."""

    def history_scores(self, scores: dict) -> dict:
        return {k: scores[k] for k in ("loss", "auc", "acc", "balanced_acc")}

    def progress_text(self, scores: dict, best: dict) -> str:
        best_auc = best["scores"].get("auc", math.nan)
        return f"val auc {scores['auc']:.3f} acc {scores['acc']:.3f} (best auc {best_auc:.3f})"
