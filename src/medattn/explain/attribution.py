"""Model-agnostic attributions: occlusion and integrated gradients. `score` maps a batch (B, C, *S) to (B,).

Inputs are standardised, so 0 is the training set's mean intensity: the baseline both methods use.
- Occlusion (Zeiler & Fergus 2014): a cube of side `window` set to the baseline at strided positions; each
  voxel's value is the mean drop of the score over the windows that covered it.
- Integrated gradients (Sundararajan et al. 2017): (x - baseline) times the mean gradient along the straight
  path (trapezoid rule over `steps` intervals), summed over channels; signed, and its sum approximates
  score(x) - score(baseline) (completeness).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

Score = Callable[[torch.Tensor], torch.Tensor]
CHUNK = 32  # inputs per forward pass


def _batched(score: Score, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([score(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)])


def occlusion_window(shape) -> tuple[int, int]:
    """(window, stride): a seventh of the smallest side; half-window strides in 2D, whole windows in 3D."""
    window = max(2, min(shape) // 7)
    return window, window if len(shape) == 3 else max(1, window // 2)


def occlusion(score: Score, x: torch.Tensor, *, window: int | None = None, stride: int | None = None):
    """(*S) mean score drop when each voxel's neighbourhood is hidden, for one input x (1, C, *S)."""
    shape = tuple(x.shape[2:])
    auto_window, auto_stride = occlusion_window(shape)
    window, stride = window or auto_window, stride or auto_stride
    starts = [sorted({*range(0, max(side - window, 0) + 1, stride), max(side - window, 0)}) for side in shape]
    boxes = [tuple(slice(s, s + window) for s in corner) for corner in itertools.product(*starts)]
    base = float(_batched(score, x)[0])
    drops, count = torch.zeros(shape), torch.zeros(shape)
    for first in range(0, len(boxes), CHUNK):
        chunk = boxes[first : first + CHUNK]
        hidden = x.repeat(len(chunk), *[1] * (x.ndim - 1))
        for i, box in enumerate(chunk):
            hidden[(i, slice(None), *box)] = 0.0
        values = _batched(score, hidden)
        for box, value in zip(chunk, values, strict=True):
            drops[box] += base - float(value)
            count[box] += 1
    return drops / count.clamp(min=1)


def integrated_gradients(score: Score, x: torch.Tensor, *, steps: int = 32) -> torch.Tensor:
    """(*S) channel-summed integrated gradients of one input x (1, C, *S) from a zero baseline."""
    alphas = torch.linspace(0, 1, steps + 1)
    weights = torch.full((steps + 1,), 1.0 / steps)
    weights[0] = weights[-1] = 0.5 / steps  # trapezoid rule
    total = torch.zeros_like(x[0])
    for first in range(0, steps + 1, CHUNK):
        a = alphas[first : first + CHUNK].view(-1, *[1] * (x.ndim - 1))
        path = (a * x).detach().requires_grad_(True)  # (b, C, *S) from the baseline 0 to x
        (grad,) = torch.autograd.grad(score(path).sum(), path)
        total += (grad * weights[first : first + CHUNK].view_as(a)).sum(dim=0)
    return (x[0] * total).sum(dim=0).detach()
