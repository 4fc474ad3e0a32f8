"""Training batches of whole images held in memory (classification, regression): shuffled, augmented."""

from __future__ import annotations

from medattn.config import RunConfig


class ImageTrainSet:
    """Images x (N, C, *S) and targets y (N, ...) in memory; one epoch is a shuffle of all N."""

    def __init__(self, x, y, *, seed: int) -> None:
        self.x, self.y, self.seed = x, y, seed
        self.generators: dict = {}
        self.rank_generators: list = []
        self.augment = None

    def __len__(self) -> int:
        return len(self.y)

    def configure(self, config: RunConfig) -> None:
        from medattn.data.augment import Augment

        self.augment = Augment(config.data.augment, spatial_dims=self.x.ndim - 2, seed=self.seed + 1)
        self.generators["augment"] = self.augment.generator
        self.rank_generators.append(self.augment.generator)

    def order(self, generator):
        import torch

        return torch.randperm(len(self.y), generator=generator)

    def batch(self, items) -> tuple:
        return self.augment(self.x[items]), self.y[items]
