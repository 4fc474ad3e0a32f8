"""Training patches for segmentation, 2D and 3D, with foreground oversampling (nnU-Net's idea).

A share `foreground_fraction` of the patches is centred on a labelled voxel: a class present in the case is
drawn uniformly, then one of its voxels, so small structures are seen as often as large ones. The rest are
placed uniformly. A patch that reaches past the image, or an image smaller than the patch, is padded: images
with each channel's minimum (the background of a scan; inference pads the same way), masks with 0.
An epoch draws about as many voxels as the training set holds: ceil(case voxels / patch voxels) patches per
case, in a shuffled order. Patch positions come from the sampler's torch.Generator, the epoch's order from the
one it is given (the engine's, the same in every process under torchrun), so a resumed run repeats both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_CANDIDATES = 20_000  # foreground voxels kept per class and case to draw centres from


def pad_values(image) -> object:
    """Per-channel minimum, (C,) float: what a patch past the image border is filled with."""
    return image.flatten(1).amin(dim=1)


def crop(array, start: Sequence[int], size: Sequence[int], fill):
    """array[..., start:start + size] per spatial axis, padded with `fill` ((C,) or a scalar) outside it.

    array is (C, *S) or (*S); start may be negative or run past the end.
    """
    import torch

    lead = array.ndim - len(size)
    out_shape = (*array.shape[:lead], *size)
    if torch.is_tensor(fill) and fill.ndim == 1:
        out = fill.view(-1, *[1] * len(size)).expand(out_shape).clone().to(array.dtype)
    else:
        out = torch.full(out_shape, fill, dtype=array.dtype)
    source, target = [slice(None)] * lead, [slice(None)] * lead
    for begin, length, extent in zip(start, size, array.shape[lead:], strict=True):
        low, high = max(begin, 0), min(begin + length, extent)
        if high <= low:
            return out
        source.append(slice(low, high))
        target.append(slice(low - begin, high - begin))
    out[tuple(target)] = array[tuple(source)]
    return out


class PatchSampler:
    """Random (image, mask) patches from in-memory cases: images (C, *S) float, masks (*S) uint8."""

    def __init__(
        self,
        images: list,
        masks: list,
        *,
        patch: Sequence[int],
        num_classes: int,
        foreground_fraction: float,
        generator,
    ) -> None:
        self.images, self.masks = images, masks
        self.patch = tuple(int(p) for p in patch)
        self.foreground_fraction = foreground_fraction
        self.generator = generator
        self.fills = [pad_values(x) for x in images]
        self.candidates = [self._foreground(m, num_classes, seed=i) for i, m in enumerate(masks)]
        voxels = math.prod(self.patch)
        self.per_case = [max(1, math.ceil(math.prod(m.shape) / voxels)) for m in masks]

    @staticmethod
    def _foreground(mask, num_classes: int, *, seed: int) -> list[np.ndarray]:
        """Flat indices of each non-empty foreground class (at most MAX_CANDIDATES, a fixed subsample)."""
        flat = mask.numpy().ravel()
        rng = np.random.default_rng(seed)
        found = []
        for label in range(1, num_classes):
            index = np.flatnonzero(flat == label)
            if len(index) > MAX_CANDIDATES:
                index = np.sort(rng.choice(index, MAX_CANDIDATES, replace=False))
            if len(index):
                found.append(index)
        return found

    def __len__(self) -> int:
        """Patches per epoch."""
        return sum(self.per_case)

    def epoch(self, generator=None):
        """Case index of every patch of one epoch, shuffled by `generator` (default: the sampler's own)."""
        import torch

        order = torch.repeat_interleave(torch.arange(len(self.masks)), torch.tensor(self.per_case))
        return order[torch.randperm(len(order), generator=generator or self.generator)]

    def _uniform(self, n: int) -> int:
        import torch

        return int(torch.randint(n, (1,), generator=self.generator))

    def start(self, case: int) -> tuple[tuple[int, ...], bool]:
        """Corner of one patch in case `case`, and whether it was centred on foreground."""
        import torch

        shape = self.masks[case].shape
        wanted = float(torch.rand(1, generator=self.generator)) < self.foreground_fraction
        classes = self.candidates[case]
        corner = []
        if wanted and classes:
            index = classes[self._uniform(len(classes))]
            centre = np.unravel_index(int(index[self._uniform(len(index))]), shape)
            for c, p, n in zip(centre, self.patch, shape, strict=True):
                # keep the patch inside the image where it fits; an image smaller than the patch is padded
                corner.append(int(np.clip(c - p // 2, min(0, n - p), max(0, n - p))))
            return tuple(corner), True
        for p, n in zip(self.patch, shape, strict=True):
            corner.append(self._uniform(n - p + 1) if n >= p else -self._uniform(p - n + 1))
        return tuple(corner), False

    def sample(self, case: int):
        """(image (C, *P), mask (*P), centred on foreground)."""
        corner, foreground = self.start(case)
        x = crop(self.images[case], corner, self.patch, self.fills[case])
        y = crop(self.masks[case], corner, self.patch, 0)
        return x, y, foreground

    def batch(self, cases) -> tuple:
        """Images (B, C, *P) float32 and masks (B, *P) int64 for the listed cases."""
        import torch

        pairs = [self.sample(int(c))[:2] for c in cases]
        return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs]).long()
