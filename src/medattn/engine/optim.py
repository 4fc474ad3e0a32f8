"""Optimizer, learning-rate schedule and weight average: the same for every task."""

from __future__ import annotations

import math


def build_optimizer(model, *, lr: float, weight_decay: float):
    """AdamW; no weight decay on norms, biases, position embeddings and tokens."""
    import torch

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim <= 1 or "pos_embed" in name or "token" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def build_schedule(optimizer, *, name: str, lr: float, total_steps: int):
    import torch

    if name == "onecycle" and total_steps >= 4:  # a rise of at least 2 steps: shorter runs fall through to cosine
        rise = max(0.2, 2.5 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=rise)
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _ema_with_warmup(decay: float):
    """EMA whose decay grows with the step, (1 + n) / (10 + n) capped at `decay`: with a fixed 0.99 a short run
    (a hundred steps) would still carry a third of its random initial weights."""

    def average(averaged, current, steps):
        rate = min(decay, (1.0 + float(steps)) / (10.0 + float(steps)))
        return averaged + (current - averaged) * (1.0 - rate)

    return average


def ema_model(model, decay: float):
    """The exponential moving average of `model`'s weights (and buffers), or None when decay is 0."""
    import torch

    if not decay:
        return None
    return torch.optim.swa_utils.AveragedModel(model, avg_fn=_ema_with_warmup(decay), use_buffers=True)
