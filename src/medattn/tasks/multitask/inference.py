"""Running a multi-task model on whole images: every head's output for each image, and the scores of a split.

Each image goes through the model whole (a per-image head reads the whole image), prepared as the card says
(engine/inputs.py). The segmentation head's softmax is resampled linearly to the input's own grid before the
argmax, so a mask lies on its input; a classification head gives class probabilities, a regression head a value in
its column's units. An ensemble averages its members' probabilities and values.
"""

from __future__ import annotations

import math

import numpy as np

from medattn.tasks.multitask.data import HeadSpec
from medattn.tasks.multitask.heads import CLASSIFICATION, SEGMENTATION


def decoded(outputs: dict, specs: list[HeadSpec]) -> dict:
    """Model outputs of one image (batch of one) -> {head: softmax (K, *S) | probs (K,) | value}."""
    result = {}
    if SEGMENTATION in outputs:
        result[SEGMENTATION] = outputs[SEGMENTATION][0].float().softmax(dim=0)
    for spec in specs:
        out = outputs[spec.head.name][0].float()
        if spec.head.kind == CLASSIFICATION:
            result[spec.head.name] = out.softmax(dim=0).cpu().numpy().astype(np.float64)
        else:
            result[spec.head.name] = float(out[0]) * spec.std + spec.mean
    return result


def run_whole(model, x, *, device, amp: bool = False) -> dict:
    """model(x[None]) in eval mode, without gradients: {head: (1, ...)} for one prepared image (C, *S)."""
    import torch

    from medattn.engine.device import autocast
    from medattn.engine.inputs import apply_missing

    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(device, amp):
        outputs = model(apply_missing(model, x[None]).to(device))
    model.train(was_training)
    return outputs


def member_outputs(member, image: np.ndarray, meta, *, device, where: str) -> dict:
    """One member's decoded outputs for a raw image (C, *S) as read from disk; the softmax on the input's grid."""
    import torch.nn.functional as F

    spec = member.spec
    image = spec.fit(image, where=where)
    x = spec.prepare(image, meta, where=where)
    specs = [HeadSpec.from_card(card) for card in member.card["heads"]]
    result = decoded(run_whole(member.model, x, device=device), specs)
    probs = result.get(SEGMENTATION)
    if probs is not None:
        if tuple(probs.shape[1:]) != tuple(image.shape[1:]):
            mode = "bilinear" if spec.spatial_dims == 2 else "trilinear"
            probs = F.interpolate(probs[None], size=tuple(image.shape[1:]), mode=mode, align_corners=False)[0]
        result[SEGMENTATION] = probs.cpu()
    return result


def ensemble_outputs(members, image: np.ndarray, meta, *, device, where: str) -> dict:
    """The mean of every member's decoded outputs; the segmentation head as labels (*S) uint8."""
    outputs = [member_outputs(m, image, meta, device=device, where=where) for m in members]
    mean = {key: sum(o[key] for o in outputs) / len(outputs) for key in outputs[0]}
    if SEGMENTATION in mean:
        mean[SEGMENTATION] = np.asarray(mean[SEGMENTATION].argmax(0)).astype(np.uint8)
    return mean


def combined_score(head_scores: dict[str, float]) -> float:
    """The mean of each head's primary metric (Dice, AUC, R² floored at 0), those that are defined."""
    defined = [v for v in head_scores.values() if math.isfinite(v)]
    return float(np.mean(defined)) if defined else math.nan


def primary(kind: str, metrics: dict) -> float:
    """A head's primary metric in [0, 1] (higher is better): Dice, AUC (accuracy when AUC is undefined: one class
    present), R² floored at 0 (a worse-than-the-mean regressor scores 0, not minus infinity)."""
    if kind == SEGMENTATION:
        return float(metrics["dice"])
    if kind == CLASSIFICATION:
        auc = metrics.get("auc", math.nan)
        return float(auc) if math.isfinite(auc) else float(metrics.get("acc", math.nan))
    r2 = metrics.get("r2", math.nan)
    return max(0.0, float(r2)) if math.isfinite(r2) else math.nan
