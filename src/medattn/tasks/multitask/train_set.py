"""Multi-task batches: whole images (a per-image label belongs to the whole image, so no patch is cut), padded to
the largest in the batch, moved with their masks by segmentation's paired augmentation, with every head's labels.
"""

from __future__ import annotations

from medattn.config import RunConfig
from medattn.data.modality_dropout import modality_dropout


def pad_batch(images: list, masks: list) -> tuple:
    """Images (C, *S_i) and masks (*S_i) zero-padded at the far end of each axis to the largest: (B, C, *S),
    (B, *S) int64. Zero is the standardised mean intensity, and background in the mask."""
    import torch
    import torch.nn.functional as F

    shape = [max(s) for s in zip(*(m.shape for m in masks), strict=True)]

    def pad(t, dims):  # F.pad takes (last axis low, high, next-to-last low, high, ...)
        widths = [w for axis in reversed(range(dims)) for w in (0, shape[axis] - t.shape[-dims + axis])]
        return F.pad(t, widths)

    dims = len(shape)
    return torch.stack([pad(x, dims) for x in images]), torch.stack([pad(m.long(), dims) for m in masks])


class WholeImageTrainSet:
    """An epoch is every training image once, shuffled; a batch is (x, {"mask": (B, *S), head: (B,) labels})."""

    def __init__(self, seg, labels: dict, config: RunConfig) -> None:
        import torch

        self.images, self.masks, self.spatial_dims = seg.train_x, seg.train_y, seg.spatial_dims
        self.labels = {name: torch.from_numpy(values) for name, values in labels.items()}  # (N,) each
        self.seed = config.train.seed
        self.generators: dict = {}
        self.rank_generators: list = []
        self.augment = None
        self.dropout = None

    def __len__(self) -> int:
        return len(self.images)

    def configure(self, config: RunConfig) -> None:
        from medattn.tasks.segment.augment import PairedAugment

        self.augment = PairedAugment(config.data.augment, spatial_dims=self.spatial_dims, seed=self.seed + 1)
        self.generators.update(self.augment.generators)
        self.rank_generators += list(self.augment.generators.values())
        self.dropout = modality_dropout(self, config, seed=self.seed + 4)

    def order(self, generator):
        import torch

        return torch.randperm(len(self.images), generator=generator)

    def batch(self, items) -> tuple:
        index = [int(i) for i in items]
        x, y = pad_batch([self.images[i] for i in index], [self.masks[i] for i in index])
        x, y = self.augment(x, y)
        target = {"mask": y, **{name: values[index] for name, values in self.labels.items()}}
        return (x if self.dropout is None else self.dropout(x)), target
