"""Classification losses: cross-entropy (optionally class-weighted) and focal loss.

Binary, multi-class and ordinal tasks use softmax over K logits; multi-label uses one sigmoid per label.
"""

from __future__ import annotations

import numpy as np

from medattn.errors import ConfigError


def class_weights(counts: list[int]) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1; empty classes get weight 0."""
    counts_arr = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts_arr > 0, counts_arr.sum() / np.maximum(counts_arr, 1) / len(counts_arr), 0.0)
    return weights / weights[weights > 0].mean()


def build_loss(*, task: str, loss: str, counts: list[int], n: int, gamma: float = 2.0, smoothing: float = 0.0):
    """The training loss for a task. `counts` are class (or positive-label) counts in train; n the image count."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    if loss not in ("ce", "weighted_ce", "focal"):
        raise ConfigError(f"train.loss {loss!r} is not one of ce, weighted_ce, focal")
    if task == "multilabel":
        positives = torch.tensor(counts, dtype=torch.float32)
        pos_weight = ((n - positives) / positives.clamp(min=1)) if loss == "weighted_ce" else None

        def multilabel(logits, target):
            if loss == "focal":
                bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
                p_t = torch.exp(-bce)
                return ((1 - p_t) ** gamma * bce).mean()
            return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)

        return multilabel

    weight = torch.tensor(class_weights(counts), dtype=torch.float32) if loss == "weighted_ce" else None
    if loss == "focal":

        def focal(logits, target):
            log_p = F.log_softmax(logits, dim=1)
            log_p_t = log_p.gather(1, target[:, None])[:, 0]
            return (-((1 - log_p_t.exp()) ** gamma) * log_p_t).mean()

        return focal
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing)


def task_loss(config, data):
    """The loss(logits, labels) a run's config asks for, from a source with `labels` and `class_counts` (a
    classification source, or MIL's bags)."""
    source = data.source
    return build_loss(
        task=source.labels,
        loss=config.train.loss,
        counts=source.class_counts("train"),
        n=data.n_train,
        gamma=config.train.focal_gamma,
        smoothing=config.train.label_smoothing,
    )


def probabilities(logits, task: str):
    """Model outputs to probabilities: sigmoid per label for multi-label, softmax otherwise (tensors, or arrays
    from an ONNX Runtime network)."""
    if isinstance(logits, np.ndarray):
        from medattn.engine import numeric

        return numeric.sigmoid(logits) if task == "multilabel" else numeric.softmax(logits, axis=1)
    return logits.sigmoid() if task == "multilabel" else logits.softmax(dim=1)


class MixedLoss:
    """The engine's loss(model, logits, target, device) for targets (labels, partner, lam) of a mixed batch."""

    def __init__(self, base) -> None:
        self.base = base  # loss(logits, labels): also what validation reports

    def __call__(self, model, logits, target, device):
        y, partner, lam = target
        y = y.to(device)
        if partner is None:
            return self.base(logits.float(), y)
        return lam * self.base(logits.float(), y) + (1 - lam) * self.base(logits.float(), y[partner])
