"""Resampling to a target spacing, the same in training, evaluation and prediction.

Each channel goes through the intensity mode (data/preprocess.py), then is resampled linearly to the target
spacing, then standardised with the training set's mean and standard deviation. Label maps are resampled by
nearest neighbour only: labels are never interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medattn.data.preprocess import Intensity, to_unit


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float] | None) -> tuple:
    if target is None:
        return tuple(shape)
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))


def unit_image(image: np.ndarray, intensity: Intensity) -> np.ndarray:
    """The intensity mode applied channel by channel: (C, *spatial) float32."""
    return np.stack([to_unit(image[c : c + 1], intensity)[0] for c in range(image.shape[0])])


def resample_image(image: np.ndarray, spacing: Sequence[float], intensity: Intensity, target: Sequence[float] | None):
    """(C, *spatial') float32 tensor at the target spacing, standardised as in training."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(unit_image(image, intensity)))
    size = resampled_shape(x.shape[1:], spacing, target)
    if size != tuple(x.shape[1:]):
        mode = "bilinear" if x.ndim == 3 else "trilinear"
        x = F.interpolate(x[None], size=size, mode=mode, align_corners=False)[0]
    return ((x - intensity.mean) / intensity.std).contiguous()


def resample_mask(mask: np.ndarray, spacing: Sequence[float], target: Sequence[float] | None):
    """(*spatial') uint8 tensor at the target spacing, resampled by nearest neighbour only."""
    import torch
    import torch.nn.functional as F

    y = torch.from_numpy(mask.astype(np.uint8))
    size = resampled_shape(y.shape, spacing, target)
    if size != tuple(y.shape):
        y = F.interpolate(y[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(torch.uint8)
    return y.contiguous()
