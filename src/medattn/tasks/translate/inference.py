"""Translating one image: by sliding window over the training patch with Gaussian blending (a 2D image no larger
than the patch is one window), then back to the target's stored intensities."""

from __future__ import annotations


def translate(model, x, *, patch, device=None, amp: bool = False, flips=None):
    """(Ct, *S) standardised prediction for a standardised source x (Cs, *S)."""
    from medattn.engine.inferers import sliding_window

    device = device or next(model.parameters()).device
    return sliding_window(model, x, patch=patch, device=device, amp=amp, flips=flips)
