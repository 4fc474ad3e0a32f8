"""Box-aware augmentation of detection inputs, 2D and 3D: the pixels move and the boxes follow.

From `data.augment`: `flip` mirrors the image and its boxes; `affine` rotates, scales (the scale jitter) and
shifts them about the centre, each box moved as the ellipse (ellipsoid) it encloses, so a round object keeps a
tight box under rotation instead of the growing box of its rotated corners; boxes are then cut to the image and
dropped when less than MIN_VISIBLE of them stays inside. `mosaic` (the training set runs it) fills the corners of
one input from several images. The intensity operations and MONAI's intensity transforms run as for every task
(data/augment.py), on the whole batch; MONAI transforms that move pixels are refused, as boxes could not follow.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from medattn.data.augment import Augment
from medattn.errors import ConfigError

GEOMETRY = ("flip", "affine")
MIN_VISIBLE = 0.4  # share of a box's volume that must stay inside the image for it to be kept
MIN_SIDE = 1.0  # pixels


def keep_visible(boxes: torch.Tensor, labels: torch.Tensor, shape, *, before: torch.Tensor | None = None):
    """(boxes cut to `shape`, their labels): those with at least MIN_VISIBLE of their volume (`before`, default the
    uncut volume) inside and every side at least MIN_SIDE."""
    from medattn.layers.boxes import box_volume, clip_boxes

    if len(boxes) == 0:
        return boxes, labels
    volume = box_volume(boxes) if before is None else before
    cut = clip_boxes(boxes, shape)
    dims = boxes.shape[1] // 2
    sides = cut[:, dims:] - cut[:, :dims]
    keep = (box_volume(cut) >= MIN_VISIBLE * volume) & (sides >= MIN_SIDE).all(dim=1)
    return cut[keep], labels[keep]


def _refuse_spatial_monai(spec: dict[str, Any]) -> None:
    import monai.transforms

    cls = getattr(monai.transforms, spec["name"].removeprefix("monai."), None)
    module = getattr(cls, "__module__", "")
    if ".spatial." in module or ".croppad." in module:
        raise ConfigError(
            f"data.augment {spec['name']}: it moves pixels and boxes cannot follow it; use flip, affine or mosaic"
        )


class BoxAugment:
    """Callable on one sample (x (C, *S), boxes (N, 2D), labels (N,)); `intensity(x)` on a batch."""

    def __init__(self, specs: list[dict[str, Any]], *, spatial_dims: int, seed: int) -> None:
        self.spatial_dims = spatial_dims
        self.generator = torch.Generator().manual_seed(seed)
        self.geometry = [dict(s) for s in specs if s["name"] in GEOMETRY]
        mosaic = [s for s in specs if s["name"] == "mosaic"]
        self.mosaic = float(mosaic[-1].get("prob", 0.5)) if mosaic else 0.0
        rest = [dict(s) for s in specs if s["name"] not in (*GEOMETRY, "mosaic")]
        for spec in rest:
            if spec["name"].startswith("monai."):
                _refuse_spatial_monai(spec)
        self.intensity = Augment(rest, spatial_dims=spatial_dims, seed=seed + 7) if rest else None
        self.generators = {"box_augment": self.generator}
        if self.intensity is not None:
            self.generators["intensity_augment"] = self.intensity.generator

    def chance(self, prob: float) -> bool:
        return bool(torch.rand(1, generator=self.generator) < prob)

    def uniform(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator) * 2 - 1

    def __call__(self, x: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor):
        for spec in self.geometry:
            if spec["name"] == "flip":
                x, boxes = self.flip(x, boxes, spec)
            elif self.chance(spec.get("prob", 0.8)):
                x, boxes, labels = self.affine(x, boxes, labels, spec)
        return x, boxes, labels

    def flip(self, x, boxes, spec):
        dims = self.spatial_dims
        for axis in spec.get("axes") or range(-dims, 0):
            if not -dims <= axis < dims:
                raise ConfigError(f"data.augment flip: axis {axis} out of range for {dims}D images")
            axis = axis % dims
            if self.chance(spec.get("prob", 0.5)):
                x = x.flip(1 + axis)
                side = float(x.shape[1 + axis])
                lo, hi = boxes[:, axis].clone(), boxes[:, dims + axis].clone()
                boxes = boxes.clone()
                boxes[:, axis], boxes[:, dims + axis] = side - hi, side - lo
        return x, boxes

    def _rotation(self, degrees: float) -> torch.Tensor:
        dims = self.spatial_dims
        rotation = torch.eye(dims)
        for a, b in [(i, j) for i in range(dims) for j in range(i + 1, dims)]:  # one angle per plane
            theta = float(self.uniform(1)) * math.radians(degrees)
            plane = torch.eye(dims)
            plane[a, a], plane[a, b], plane[b, a], plane[b, b] = (
                math.cos(theta),
                -math.sin(theta),
                math.sin(theta),
                math.cos(theta),
            )
            rotation = rotation @ plane
        return rotation

    def affine(self, x, boxes, labels, spec):
        """Output pixel p maps to input pixel M (p - c) + c + t (c the centre); boxes go the other way."""
        dims = self.spatial_dims
        size = torch.tensor(x.shape[1:], dtype=torch.float32)
        zoom = 1 + float(self.uniform(1)) * spec.get("scale", 0.1)  # > 1 enlarges the objects
        matrix = self._rotation(spec.get("rotate_deg", 10.0)) / zoom  # (D, D) output -> input, array axes
        shift = self.uniform(dims) * spec.get("translate", 0.05) * size
        # affine_grid works on coordinates in [-1, 1], last axis first
        theta = torch.diag(2 / size) @ matrix @ torch.diag(size / 2)
        theta = torch.cat([theta, (2 * shift / size)[:, None]], dim=1).flip(0)
        theta = torch.cat([theta[:, :dims].flip(1), theta[:, dims:]], dim=1)
        grid = F.affine_grid(theta[None], [1, *x.shape], align_corners=False)
        x = F.grid_sample(x[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        if len(boxes) == 0:
            return x, boxes, labels
        inverse = torch.linalg.inv(matrix)
        centre = size / 2
        middle = (boxes[:, :dims] + boxes[:, dims:]) / 2
        half = (boxes[:, dims:] - boxes[:, :dims]) / 2
        moved = (middle - centre - shift) @ inverse.T + centre
        reach = torch.sqrt((half[:, None, :] * inverse[None]).square().sum(dim=2))  # (N, D): the ellipsoid's box
        moved_boxes = torch.cat([moved - reach, moved + reach], dim=1)
        before = (2 * reach).prod(dim=1)
        boxes, labels = keep_visible(moved_boxes, labels, x.shape[1:], before=before)
        return x, boxes, labels
