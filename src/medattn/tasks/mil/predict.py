"""Bag-level inference: probabilities and each instance's attention weight, for validation, evaluate and
predict."""

from __future__ import annotations

import numpy as np

from medattn.errors import ConfigError
from medattn.tasks.mil.data import BagTensors


def bag_outputs(model, bags: BagTensors, *, device=None, amp: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """(probabilities (B, K), attention weights: one (N_b,) array per bag), one bag at a time (no padding)."""
    import torch

    from medattn.engine.device import autocast

    if not hasattr(model, "forward_bag"):
        raise ConfigError("attention MIL runs predict with the PyTorch network (--backend torch)")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs, weights = [], []
    try:
        with torch.no_grad(), autocast(device, amp):
            for index in range(len(bags)):
                x = bags.bag(index)[None].to(device)  # (1, N, C, *S)
                clinical = None if bags.clinical is None else bags.clinical[index : index + 1].to(device)
                logits, attention = model.forward_bag(x, clinical)
                probs.append(logits.float().softmax(dim=1)[0].cpu().numpy())
                weights.append(attention.float()[0].cpu().numpy())
    finally:
        model.train(was_training)
    return np.stack(probs).astype(np.float64), weights


def attention_rows(files: list[str], weights: np.ndarray, *, top: int | None = None) -> list[dict]:
    """[{file, weight, rank}] of one bag, highest weight first (all, or the `top` first)."""
    order = np.argsort(-weights, kind="stable")
    chosen = order if top is None else order[:top]
    return [{"file": files[i], "weight": float(weights[i]), "rank": int(r + 1)} for r, i in enumerate(chosen)]
