"""Mixup and CutMix: train on blends of two images with the loss blended by the same weight.

Both draw the weight lam from Beta(alpha, alpha) through a seeded torch generator (the Beta quantile of a
uniform draw), so a run stays deterministic and resumable.
"""

from __future__ import annotations

from scipy.special import betaincinv


class Mixer:
    def __init__(self, *, mixup: float, cutmix: float, generator) -> None:
        self.mixup, self.cutmix, self.generator = mixup, cutmix, generator

    @property
    def active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def _uniform(self, *shape):
        import torch

        return torch.rand(*shape, generator=self.generator)

    def __call__(self, x):
        """Returns the mixed batch, the permutation of partners and lam (share of the original image)."""
        import torch

        use_cutmix = self.cutmix > 0 and (self.mixup <= 0 or float(self._uniform(1)) < 0.5)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(betaincinv(alpha, alpha, float(self._uniform(1))))
        partner = torch.randperm(x.shape[0], generator=self.generator)
        if not use_cutmix:
            return lam * x + (1 - lam) * x[partner], partner, lam
        # CutMix: paste a box covering a (1 - lam) share of the image from the partner
        sizes = x.shape[2:]
        side = (1 - lam) ** (1 / len(sizes))
        box = []
        for size in sizes:
            length = round(size * side)
            start = int(self._uniform(1) * (size - length + 1))
            box.append(slice(start, start + length))
        mixed = x.clone()
        mixed[(..., *box)] = x[partner][(..., *box)]
        pasted = 1.0  # the share actually pasted, after rounding the box to whole pixels
        for region, size in zip(box, sizes, strict=True):
            pasted *= (region.stop - region.start) / size
        return mixed, partner, 1.0 - pasted
