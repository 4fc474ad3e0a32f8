"""How images become detector inputs, chosen once from the training data and kept in the model card.

Two modes:
- native (`data.patch`): images keep their pixel (voxel) grid. Training draws patches (the whole image when it is
  small); inference runs on the whole image, or, when it is larger than `window`, on overlapping tiles whose
  boxes are merged (inference.py). Suits images that hold small objects: cells, nodules, lesions.
- resize (`data.size`): every image is letterboxed to `size`: scaled by one factor (aspect kept) so it fits,
  then padded at the far end of each axis. Suits sets of differently sized images whose objects fill much of
  them. Boxes are scaled by the same factor, and predictions scaled back.
Automatic choice (neither given): native when the median image fits PATCH_CAP, or when the largest boxes fit in
half of it (training patches then hold whole objects); resize to the median shape, at most RESIZE_CAP, otherwise.

The levels that predict (`strides`) come from the training boxes as the model sees them: the finest is 4 where
the smaller boxes are under FINE_SIDE pixels (a stride-8 cell would hold several of them), else 8; the coarsest
is the first with the larger boxes spanning at most 8 of its cells, and at least two levels above the finest.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

from medattn.data.preprocess import Intensity, to_unit
from medattn.engine.inputs import InputSpec

PATCH_CAP = {2: 256, 3: 64}  # native mode: the automatic training patch, per axis, at most
WINDOW_CAP = {2: 1024, 3: 160}  # native mode: images larger than this (per axis) are detected by tiles
RESIZE_CAP = {2: 512, 3: 128}  # resize mode: the automatic size's longest axis, at most
MULTIPLE = {2: 32, 3: 16}  # sizes rounded up to a multiple of the coarsest backbone stride
FINE_SIDE = {2: 16.0, 3: 12.0}


@dataclass
class DetectionPlan:
    spatial_dims: int
    channels: int
    intensity: Intensity
    size: list[int] | None = None  # resize mode: the letterbox
    patch: list[int] | None = None  # native mode: the training patch
    window: list[int] | None = None  # native mode: larger images are covered by tiles of this size
    overlap: list[int] | None = None  # native mode: tiles overlap by this (the largest training box, and more)
    strides: list[int] | None = None
    source_spacing: list[float] | None = None

    @property
    def native(self) -> bool:
        return self.patch is not None

    def spec(self) -> InputSpec:
        return InputSpec(
            spatial_dims=self.spatial_dims,
            channels=self.channels,
            intensity=self.intensity,
            size=self.size,
            patch=self.patch,
            source_spacing=self.source_spacing,
        )

    def to_card(self) -> dict:
        card = self.spec().to_card()
        card.update(
            letterbox=not self.native,
            window=self.window,
            overlap=self.overlap,
            inference=(
                f"whole image up to {self.window}, larger ones by overlapping tiles, boxes merged by NMS"
                if self.native
                else "letterboxed to size (one scale, aspect kept), boxes scaled back"
            ),
        )
        return card

    @classmethod
    def from_card(cls, card: dict) -> DetectionPlan:
        given = card["input"]
        native = given.get("patch") is not None
        return cls(
            spatial_dims=int(given["spatial_dims"]),
            channels=int(given["channels"]),
            intensity=Intensity.from_dict(given["intensity"]),
            size=None if native else given.get("size"),
            patch=given.get("patch"),
            window=given.get("window"),
            overlap=given.get("overlap"),
            strides=card["model"]["options"].get("strides"),
            source_spacing=given.get("source_spacing_mm"),
        )

    def prepare(self, image: np.ndarray, *, where: str, standardise: bool = True):
        """(x (C, *S') float32 tensor, scale): an image as read, as the model takes it. Boxes in the image's pixels
        times `scale` are boxes in x's pixels (1 in native mode)."""
        import torch

        if self.channels == 3 and image.shape[0] == 1:  # a gray picture among colour ones: gray in every channel
            image = np.repeat(image, 3, axis=0)
        image = self.spec().fit(image, where=where)
        unit = torch.from_numpy(np.ascontiguousarray(to_unit(image, self.intensity)))
        scale = 1.0
        if not self.native:
            unit, scale = letterbox(unit, self.size)
        if standardise:
            unit = (unit - self.intensity.mean) / self.intensity.std
        return unit, scale


def letterbox(x, size):
    """(x scaled by one factor to fit `size` and padded at the far ends with each channel's minimum, factor)."""
    import torch.nn.functional as F

    from medattn.data.patches import crop, pad_values

    spatial = x.shape[1:]
    scale = min(t / s for t, s in zip(size, spatial, strict=True))
    shape = [max(1, min(t, round(s * scale))) for s, t in zip(spatial, size, strict=True)]
    if list(shape) != list(spatial):
        mode = "area" if scale < 1 else ("bilinear" if len(shape) == 2 else "trilinear")
        options = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x[None].float(), size=shape, mode=mode, **options)[0]
    return crop(x, [0] * len(size), list(size), pad_values(x)), scale


def round_up(value: float, multiple: int) -> int:
    return int(multiple * math.ceil(value / multiple))


def choose_geometry(shapes: list[tuple[int, ...]], sides: np.ndarray, *, patch=None, size=None) -> dict:
    """{"patch", "window", "size", "scale"} from the training images' shapes and box sides (N, D) in pixels;
    `patch` or `size` given by the user win. `scale` is how much resize mode shrinks the median image."""
    dims = len(shapes[0])
    median = [statistics.median(s[a] for s in shapes) for a in range(dims)]
    largest = float(np.quantile(sides.max(axis=1), 0.95)) if len(sides) else 0.0
    multiple = MULTIPLE[dims]
    if patch is None and size is None:
        fits = all(m <= PATCH_CAP[dims] for m in median)
        if fits or largest <= PATCH_CAP[dims] / 2:
            top = [max(s[a] for s in shapes) for a in range(dims)]
            patch = [min(PATCH_CAP[dims], round_up(t, multiple)) for t in top] if fits else [PATCH_CAP[dims]] * dims
        else:
            shrink = min(1.0, RESIZE_CAP[dims] / max(median))
            size = [round_up(m * shrink, multiple) for m in median]
    if patch is not None:
        widest = [max(s[a] for s in shapes) for a in range(dims)]
        window = [max(p, min(WINDOW_CAP[dims], round_up(w, multiple))) for p, w in zip(patch, widest, strict=True)]
        return {"patch": list(patch), "window": window, "size": None, "scale": 1.0}
    scale = min(t / m for t, m in zip(size, median, strict=True))
    return {"patch": None, "window": None, "size": list(size), "scale": scale}


def choose_strides(sides: np.ndarray, dims: int, levels: list[int]) -> list[int]:
    """The predicting levels, among the backbone's `levels` (4, 8, ...), for box sides (N, D) as the model sees
    them (see the module docstring)."""
    if len(sides) == 0:
        return list(levels[1:])
    small = float(np.quantile(sides.min(axis=1), 0.1))
    large = float(np.quantile(sides.max(axis=1), 0.95))
    finest = min(len(levels) - 1, 0 if small < FINE_SIDE[dims] else 1)
    coarsest = next((i for i, s in enumerate(levels) if large / s <= 8), len(levels) - 1)
    coarsest = min(len(levels) - 1, max(coarsest, finest + 2))
    return list(levels[finest : coarsest + 1])


def tile_overlap(sides: np.ndarray, window: list[int], *, margin: int = 8) -> list[int]:
    """Tiles overlap by the largest training box plus a margin, so every object lies whole in some tile."""
    largest = sides.max(axis=0) if len(sides) else np.zeros(len(window))
    return [int(min(w // 2, math.ceil(s) + margin)) for s, w in zip(largest, window, strict=True)]
