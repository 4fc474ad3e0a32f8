"""Training batches of whole images held in memory (classification, regression): shuffled, augmented, with each
image's clinical vector beside it when the run has one (some vectors made all-unknown by clinical dropout)."""

from __future__ import annotations

from medattn.config import RunConfig


class ImageTrainSet:
    """Images x (N, C, *S), targets y (N, ...) and clinical vectors (N, F) or None in memory; one epoch is a
    shuffle of all N. A batch's x is the images, or (images, clinical vectors)."""

    def __init__(self, x, y, *, seed: int, clinical=None) -> None:
        self.x, self.y, self.seed, self.clinical = x, y, seed, clinical
        self.generators: dict = {}
        self.rank_generators: list = []
        self.augment = None
        self.clinical_dropout = None

    def __len__(self) -> int:
        return len(self.y)

    def configure(self, config: RunConfig) -> None:
        from medattn.data.augment import Augment

        self.augment = Augment(config.data.augment, spatial_dims=self.x.ndim - 2, seed=self.seed + 1)
        self.generators["augment"] = self.augment.generator
        self.rank_generators.append(self.augment.generator)
        if self.clinical is not None:
            from medattn.data.clinical_images import clinical_dropout

            missing = config.model.options["tabular"]["missing"]
            self.clinical_dropout = clinical_dropout(self, config, missing, seed=self.seed + 4)

    def order(self, generator):
        import torch

        return torch.randperm(len(self.y), generator=generator)

    def batch(self, items) -> tuple:
        x = self.augment(self.x[items])
        if self.clinical is None:
            return x, self.y[items]
        clinical = self.clinical[items]
        if self.clinical_dropout is not None:
            clinical = self.clinical_dropout(clinical)
        return (x, clinical), self.y[items]
