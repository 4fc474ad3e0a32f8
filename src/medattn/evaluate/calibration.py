"""Calibration: expected calibration error (ECE) and reliability-diagram bins.

Bins are equal-width over [0, 1]: bin b holds confidences in [b/B, (b+1)/B), the last bin also
holds 1.0. ECE = sum over bins of (count / N) * |accuracy - mean confidence|.

- binary, multiclass, ordinal: confidence is the probability of the argmax class and "accuracy"
  is whether that class is the true one (Guo et al., 2017).
- multilabel: each label is a binary problem scored on its positive probability: "confidence" is
  probs[:, l] and "accuracy" the fraction of positives in the bin. ECE is the mean of the per-label
  ECEs; `reliability_bins` pools all labels into one diagram.
"""

from __future__ import annotations

import numpy as np

from medattn.tasks.classify.metrics import check_inputs


def _bin_sums(confidence: np.ndarray, hit: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Per-bin (sum of confidence, sum of hits, count) for 1-D confidence and hit arrays."""
    # floor(c * B), with 1.0 folded into the last bin so every probability lands in a bin.
    idx = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    idx = np.maximum(idx, 0)  # probabilities a rounding error below 0
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    hit_sum = np.bincount(idx, weights=hit.astype(float), minlength=n_bins)
    count = np.bincount(idx, minlength=n_bins)
    return conf_sum, hit_sum, count


def _ece(confidence: np.ndarray, hit: np.ndarray, n_bins: int) -> float:
    conf_sum, hit_sum, _ = _bin_sums(confidence, hit, n_bins)
    # count * |acc - conf| == |hits - sum of confidences| per bin.
    return float(np.abs(hit_sum - conf_sum).sum() / confidence.size)


def _confidence_and_hits(y: np.ndarray, p: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Binary/multiclass/ordinal: (N,) confidence of the argmax class and whether it is correct.

    Multilabel: (N, L) positive probabilities and labels.
    """
    if task == "multilabel":
        return p, y
    pred = np.argmax(p, axis=1)
    return p[np.arange(p.shape[0]), pred], pred == y


def _check_bins(n_bins: int) -> None:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, found {n_bins}")


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, *, task: str, n_bins: int = 15) -> float:
    """ECE with `n_bins` equal-width bins (see the module docstring for each task)."""
    _check_bins(n_bins)
    y, p = check_inputs(y_true, probs, task)
    confidence, hit = _confidence_and_hits(y, p, task)
    if task == "multilabel":
        return float(np.mean([_ece(confidence[:, c], hit[:, c], n_bins) for c in range(p.shape[1])]))
    return _ece(confidence, hit, n_bins)


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, *, task: str, n_bins: int = 15) -> dict[str, list]:
    """Per-bin statistics for a reliability diagram.

    Returns {"edges": n_bins + 1 bin edges, "confidence": mean confidence per bin,
    "accuracy": accuracy (multilabel: fraction positive) per bin, "count": cases per bin}.
    Empty bins have count 0 and nan confidence and accuracy. Multilabel pools all labels.
    """
    _check_bins(n_bins)
    y, p = check_inputs(y_true, probs, task)
    confidence, hit = _confidence_and_hits(y, p, task)
    conf_sum, hit_sum, count = _bin_sums(confidence.ravel(), hit.ravel(), n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        mean_acc = np.where(count > 0, hit_sum / count, np.nan)
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": mean_acc.tolist(),
        "count": count.astype(int).tolist(),
    }
