"""Translating one image: by sliding window over the training patch with Gaussian blending (a 2D image no larger
than the patch is one window), then back to the target's stored intensities. A fold ensemble averages its
members' translations in stored intensities (each member has its own intensity standardisation)."""

from __future__ import annotations

import numpy as np


def translate(model, x, *, patch, device=None, amp: bool = False, flips=None):
    """(Ct, *S) standardised prediction for a standardised source x (Cs, *S)."""
    from medattn.engine.inferers import sliding_window

    device = device or next(model.parameters()).device
    return sliding_window(model, x, patch=patch, device=device, amp=amp, flips=flips)


def target_scale(card: dict):
    from medattn.tasks.translate.data import TargetScale

    return TargetScale.from_card({k: v for k, v in card["target"].items() if k != "channels"})


def translate_stored(members, image: np.ndarray, meta, *, where: str) -> np.ndarray:
    """(Ct, *S) float64 in the target's stored intensities: the mean over the runs in `members` (LoadedRun) of
    each one's translation of `image` (Cs, *S) as read."""
    outputs = []
    for member in members:
        x = member.spec.prepare(image, meta, where=where)
        pred = translate(member.model, x, patch=member.card["input"]["patch"])
        outputs.append(target_scale(member.card).inverse(pred).double().numpy())
    return np.mean(outputs, axis=0)
