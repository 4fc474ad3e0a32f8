"""Detection batches: images (or patches of them) with their boxes, augmented so the boxes follow.

Native mode (plan.py) draws patches: an epoch holds ceil(image pixels / patch pixels) patches per image, a share
OBJECT_FRACTION of them centred on a random box (so sparse lesions are seen), the rest anywhere; an image smaller
than the patch lands at a random place in it, padded with each channel's minimum. Resize mode takes each
letterboxed image once per epoch. Boxes cut by a patch's edge are kept when enough of them stays inside
(augment.py, MIN_VISIBLE). With `mosaic`, the corners of a patch, split at a random point, come from other images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from medattn.config import RunConfig
from medattn.data.patches import crop, pad_values
from medattn.tasks.detect.augment import BoxAugment, keep_visible

OBJECT_FRACTION = 0.5


@dataclass
class BoxTargets:
    """What a detection loss needs besides the model's output: each image's boxes (N, 2D) and labels (N,), in the
    input's pixels, and the input's spatial shape (the model's grid of points or anchors follows from it)."""

    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    shape: tuple[int, ...]


class DetectionTrainSet:
    def __init__(self, data, config: RunConfig) -> None:
        self.x, self.boxes, self.labels = data.train_x, data.train_boxes, data.train_labels
        self.plan = data.plan
        self.seed = config.train.seed
        self.size = list(self.plan.patch or self.plan.size)
        self.positions = torch.Generator().manual_seed(self.seed + 3)
        self.fills = [pad_values(x.float()) for x in self.x]
        voxels = math.prod(self.size)
        self.per_image = [max(1, math.ceil(math.prod(x.shape[1:]) / voxels)) if self.plan.native else 1 for x in self.x]
        self.generators = {"patches": self.positions}
        self.rank_generators = [self.positions]
        self.augment: BoxAugment | None = None

    def __len__(self) -> int:
        return sum(self.per_image)

    def configure(self, config: RunConfig) -> None:
        self.augment = BoxAugment(config.data.augment, spatial_dims=self.plan.spatial_dims, seed=self.seed + 1)
        self.generators.update(self.augment.generators)
        self.rank_generators += list(self.augment.generators.values())

    def order(self, generator):
        order = torch.repeat_interleave(torch.arange(len(self.x)), torch.tensor(self.per_image))
        return order[torch.randperm(len(order), generator=generator)]

    def _draw(self, n: int) -> int:
        return int(torch.randint(max(n, 1), (1,), generator=self.positions))

    def corner(self, index: int, size: list[int]) -> list[int]:
        """Where a patch of `size` starts in image `index`: on a random box (OBJECT_FRACTION), else anywhere."""
        shape = self.x[index].shape[1:]
        boxes = self.boxes[index]
        on_box = len(boxes) and float(torch.rand(1, generator=self.positions)) < OBJECT_FRACTION
        if on_box:
            box = boxes[self._draw(len(boxes))]
            dims = len(shape)
            centre = [int((box[a] + box[dims + a]) / 2) for a in range(dims)]
            return [  # the box within the middle half of the patch, the patch inside the image
                min(max(c - p // 2 + self._draw(p // 2 + 1) - p // 4, 0), n - p) if n > p else -self._draw(p - n + 1)
                for c, p, n in zip(centre, size, shape, strict=True)
            ]
        return [self._draw(n - p + 1) if n >= p else -self._draw(p - n + 1) for p, n in zip(size, shape, strict=True)]

    def cut(self, index: int, size: list[int]):
        """(x (C, *size) float32, boxes, labels) of a patch of image `index` (the letterbox itself in resize mode)."""
        start = self.corner(index, size) if self.plan.native else [0] * len(size)
        x = crop(self.x[index], start, size, self.fills[index].half()).float()
        offset = torch.tensor(start * 2, dtype=torch.float32)
        boxes, labels = keep_visible(self.boxes[index] - offset, self.labels[index], size)
        return x, boxes, labels

    def mosaic(self, index: int):
        """One input whose 2^D corners, split at a random point, come from this image and others."""
        dims = len(self.size)
        split = [int(s * (0.25 + 0.5 * float(torch.rand(1, generator=self.positions)))) for s in self.size]
        canvas = torch.zeros(self.x[index].shape[0], *self.size)
        all_boxes, all_labels = [], []
        for corner in range(2**dims):
            picks = [(corner >> a) & 1 for a in range(dims)]
            start = [0 if p == 0 else s for p, s in zip(picks, split, strict=True)]
            part = [s if p == 0 else n - s for p, s, n in zip(picks, split, self.size, strict=True)]
            source = index if corner == 0 else self._draw(len(self.x))
            x, boxes, labels = self.cut(source, part)
            canvas[(slice(None), *(slice(b, b + p) for b, p in zip(start, part, strict=True)))] = x
            all_boxes.append(boxes + torch.tensor(start * 2, dtype=torch.float32))
            all_labels.append(labels)
        return canvas, torch.cat(all_boxes), torch.cat(all_labels)

    def sample(self, index: int):
        if self.augment is not None and self.augment.mosaic and self.augment.chance(self.augment.mosaic):
            x, boxes, labels = self.mosaic(index)
        else:
            x, boxes, labels = self.cut(index, self.size)
        if self.augment is not None:
            x, boxes, labels = self.augment(x, boxes, labels)
        return x, boxes, labels

    def batch(self, items) -> tuple:
        samples = [self.sample(int(i)) for i in items]
        x = torch.stack([s[0] for s in samples])  # (B, C, *size)
        if self.augment is not None and self.augment.intensity is not None:
            x = self.augment.intensity(x)
        return x, BoxTargets([s[1] for s in samples], [s[2] for s in samples], tuple(self.size))
