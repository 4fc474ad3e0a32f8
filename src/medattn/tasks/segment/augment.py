"""`data.augment` for segmentation: geometry applied to image and mask alike, intensity to the image only.

`flip` and `affine` (the same keys as data/augment.py) move both: one random transform per sample, the image
sampled linearly and the mask by nearest neighbour (labels are never interpolated). Every other operation
(noise, intensity, speckle, monai.*) goes to `Augment` and touches the image alone; a MONAI *spatial*
transform would move the image away from its mask, so it is refused.
"""

from __future__ import annotations

import math
from typing import Any

from medattn.data.augment import Augment, check_spec
from medattn.errors import ConfigError

GEOMETRY = ("flip", "affine")


class PairedAugment:
    """Callable on (image (B, C, *S) float, mask (B, *S) int64); deterministic for a seed."""

    def __init__(self, specs: list[dict[str, Any]], *, spatial_dims: int, seed: int) -> None:
        import torch

        names = [check_spec(s) for s in specs]
        self.geometry = [dict(s) for s, n in zip(specs, names, strict=True) if n in GEOMETRY]
        self.spatial_dims = spatial_dims
        self.generator = torch.Generator().manual_seed(seed)
        self.intensity = Augment(
            [s for s, n in zip(specs, names, strict=True) if n not in GEOMETRY],
            spatial_dims=spatial_dims,
            seed=seed + 1,
        )
        for transform, _ in self.intensity.monai.values():
            if type(transform).__module__.startswith("monai.transforms.spatial"):
                raise ConfigError(
                    f"data.augment: {type(transform).__name__} moves the image but not its mask; for segmentation "
                    "use the built-in flip and affine, which move both"
                )

    @property
    def generators(self) -> dict:
        return {"augment_geometry": self.generator, "augment_intensity": self.intensity.generator}

    def __call__(self, x, y):
        for spec in self.geometry:
            x, y = (self._flip if spec["name"] == "flip" else self._affine)(x, y, spec)
        return self.intensity(x), y

    def _chosen(self, batch: int, prob: float):
        import torch

        return torch.rand(batch, generator=self.generator) < prob  # (B,)

    def _flip(self, x, y, spec):
        import torch

        for axis in spec.get("axes") or range(-self.spatial_dims, 0):
            if not -self.spatial_dims <= axis < self.spatial_dims:
                raise ConfigError(f"data.augment flip: axis {axis} out of range for {self.spatial_dims}D images")
            axis = axis if axis < 0 else axis - self.spatial_dims  # counted from the end: the same in x and y
            chosen = self._chosen(len(x), spec.get("prob", 0.5))
            x = torch.where(chosen.view(-1, *[1] * (x.ndim - 1)), x.flip(axis), x)
            y = torch.where(chosen.view(-1, *[1] * (y.ndim - 1)), y.flip(axis), y)
        return x, y

    def _affine(self, x, y, spec):
        """Rotation in every plane, scale per axis and a shift, drawn per sample; identity where not chosen."""
        import torch
        import torch.nn.functional as F

        batch, dims = len(x), self.spatial_dims
        on = self._chosen(batch, spec.get("prob", 0.8)).float()

        def symmetric(*shape):  # uniform in [-1, 1]
            return torch.rand(*shape, generator=self.generator) * 2 - 1

        matrix = torch.eye(dims).repeat(batch, 1, 1)  # (B, dims, dims)
        limit = math.radians(spec.get("rotate_deg", 10.0))
        for a in range(dims):
            for b in range(a + 1, dims):
                angle = symmetric(batch) * limit * on
                turn = torch.eye(dims).repeat(batch, 1, 1)
                turn[:, a, a], turn[:, b, b] = angle.cos(), angle.cos()
                turn[:, a, b], turn[:, b, a] = -angle.sin(), angle.sin()
                matrix = matrix @ turn
        matrix = matrix * (1 + symmetric(batch, 1, dims) * spec.get("scale", 0.1) * on.view(-1, 1, 1))
        shift = symmetric(batch, dims, 1) * 2 * spec.get("translate", 0.05) * on.view(-1, 1, 1)
        grid = F.affine_grid(torch.cat([matrix, shift], dim=2), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        labels = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)
        return x, labels[:, 0].round().long()
