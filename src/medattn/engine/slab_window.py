"""Sliding-window inference in bounded memory, for volumes whose float32 output would not fit.

The same windows (half-patch overlap) and Gaussian importance map as MONAI's `sliding_window_inference`, with the
blended logits accumulated in float32 only over one slab, one patch thick along the first axis. Windows are run a
row at a time (all windows with the same start on that axis); once a row is done, every voxel before the next
row's start is final: it is normalised, transformed and stored in float16 on the CPU, and the slab moves on. So
the working memory is the slab, not the volume, and the result is (K, *S) float16: half of the float32 path.

`transform` must act voxel by voxel on (1, K, *S) (a softmax or sigmoid over channels, or none), since it runs
on each finished part of the volume in turn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

SIGMA = 0.125  # of the patch, per axis: MONAI's default Gaussian blending


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Window starts along one axis, as MONAI's dense_patch_slices places them (the last one flush with the end)."""
    if size <= patch:
        return [0]
    step = max(int(patch * (1 - overlap)), 1)
    count = next(i for i in range(math.ceil(size / step)) if i * step + patch >= size) + 1
    return [min(i * step, size - patch) for i in range(count)]


def importance(patch: Sequence[int]):
    """(*P) float32 Gaussian weights, as MONAI's compute_importance_map (mode gaussian)."""
    from monai.data.utils import compute_importance_map

    return compute_importance_map(tuple(patch), mode="gaussian", sigma_scale=SIGMA, device="cpu").float()


def slab_sliding_window(
    model,
    x,
    *,
    patch: Sequence[int],
    overlap: float,
    transform: Callable,
    device,
    batch: int,
    amp: bool = False,
):
    """(K, *S) float16 on the CPU: transform(blended logits) of one image x (C, *S), already padded to the patch."""
    import itertools

    import torch

    from medattn.engine.device import autocast

    shape = tuple(x.shape[1:])
    weight = importance(patch)  # (*P)
    starts = [window_starts(s, p, overlap) for s, p in zip(shape, patch, strict=True)]
    rest = list(itertools.product(*starts[1:]))  # window starts on the other axes, the same for every row
    depth = patch[0]
    acc = weights = out = None
    low = 0  # the first voxel on axis 0 not yet final; acc[:, 0] is that voxel
    rows = starts[0]
    for index, row in enumerate(rows):
        corners = [(row, *other) for other in rest]
        for first in range(0, len(corners), batch):
            chunk = corners[first : first + batch]
            windows = torch.stack(
                [x[(slice(None), *(slice(c, c + p) for c, p in zip(corner, patch, strict=True)))] for corner in chunk]
            )  # (B, C, *P)
            with autocast(device, amp):
                logits = model(windows.to(device))
            logits = (logits[0] if isinstance(logits, list | tuple) else logits).float().cpu()  # (B, K, *P)
            if acc is None:
                classes = logits.shape[1]
                acc = torch.zeros((classes, depth, *shape[1:]), dtype=torch.float32)  # (K, P0, *S[1:])
                weights = torch.zeros((1, depth, *shape[1:]), dtype=torch.float32)
                out = torch.empty((classes, *shape), dtype=torch.float16)
            for corner, window in zip(chunk, logits, strict=True):
                where = (slice(None), slice(row - low, row - low + depth), *_spans(corner[1:], patch[1:]))
                acc[where] += window * weight
                weights[where] += weight
        done = rows[index + 1] if index + 1 < len(rows) else shape[0]  # voxels before it are final
        ready = done - low
        blended = acc[:, :ready] / weights[:, :ready]  # (K, ready, *S[1:])
        out[:, low:done] = transform(blended[None])[0].to(torch.float16)
        acc = torch.cat([acc[:, ready:], acc.new_zeros((acc.shape[0], ready, *shape[1:]))], dim=1)
        weights = torch.cat([weights[:, ready:], weights.new_zeros((1, ready, *shape[1:]))], dim=1)
        low = done
    return out


def _spans(corner: Sequence[int], patch: Sequence[int]) -> list[slice]:
    return [slice(c, c + p) for c, p in zip(corner, patch, strict=True)]
