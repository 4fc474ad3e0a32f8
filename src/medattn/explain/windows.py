"""Explaining a patch-trained model through the same sliding window as its inference (engine/inferers.py).

The image is covered by windows of the training patch at half-patch overlap; each window is explained for the
target restricted to it, and the window maps are blended with the same Gaussian weights (sigma = patch / 8, as
MONAI's `gaussian` mode) that blend the model's outputs. An image smaller than the patch is padded with each
channel's minimum, as inference pads it, and the map cropped back.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

from medattn.engine.inferers import OVERLAP
from medattn.explain.target import Target


def window_starts(side: int, patch: int) -> list[int]:
    stride = max(1, int(patch * (1 - OVERLAP)))
    last = max(side - patch, 0)
    return sorted({*range(0, last + 1, stride), last})


def gaussian(patch: Sequence[int]) -> torch.Tensor:
    axes = []
    for side in patch:
        centre, sigma = (side - 1) / 2, side / 8
        axes.append(torch.exp(-((torch.arange(side) - centre) ** 2) / (2 * sigma**2)))
    weights = axes[0]
    for axis in axes[1:]:
        weights = weights[..., None] * axis
    return weights.clamp(min=1e-3)


def windowed(
    explain: Callable[[torch.Tensor, Target], torch.Tensor], x: torch.Tensor, target: Target, patch: Sequence[int]
) -> torch.Tensor:
    """(*S) blended map of `explain(window (1, C, *patch), window's target)` over one input x (1, C, *S)."""
    from medattn.data.patches import crop, pad_values

    shape = tuple(x.shape[2:])
    padded = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))
    image = x[0] if padded == shape else crop(x[0], [0] * len(shape), padded, pad_values(x[0]))
    if target.region is not None and padded != shape:
        region = torch.zeros(padded, dtype=target.region.dtype)
        region[tuple(slice(0, s) for s in shape)] = target.region
        target = Target(target.index, target.name, target.title, target.squash, region)
    weights = gaussian(patch)
    total, norm = torch.zeros(padded), torch.zeros(padded)
    for corner in itertools.product(*(window_starts(s, p) for s, p in zip(padded, patch, strict=True))):
        box = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
        total[box] += explain(image[(slice(None), *box)][None], target.crop(box)) * weights
        norm[box] += weights
    return (total / norm)[tuple(slice(0, s) for s in shape)]
