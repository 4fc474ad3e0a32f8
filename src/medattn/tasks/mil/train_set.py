"""MIL training batches: a shuffle of the bags, each bag's images augmented, bags padded to the longest.

A bag longer than MAX_INSTANCES is trained on a random subset of that many instances, drawn afresh each epoch
(validation and evaluation see every instance): it bounds a step's memory on CPU, and a fresh subset per epoch
is a known regulariser for attention MIL.
"""

from __future__ import annotations

from medattn.config import RunConfig
from medattn.tasks.mil.data import BagTensors, padded

MAX_INSTANCES = 48


class BagTrainSet:
    def __init__(self, bags: BagTensors, *, seed: int) -> None:
        self.bags, self.seed = bags, seed
        self.generators: dict = {}
        self.rank_generators: list = []
        self.augment = None
        self.sampling = None
        self.clinical_dropout = None  # with train.clinical_dropout: whole vectors made all-unknown

    def __len__(self) -> int:
        return len(self.bags)

    def configure(self, config: RunConfig) -> None:
        import torch

        from medattn.data.augment import Augment

        self.augment = Augment(config.data.augment, spatial_dims=self.bags.x.ndim - 2, seed=self.seed + 1)
        self.sampling = torch.Generator().manual_seed(self.seed + 2)
        self.generators.update(augment=self.augment.generator, instances=self.sampling)
        self.rank_generators += [self.augment.generator, self.sampling]
        if self.bags.clinical is not None:
            from medattn.data.clinical_images import clinical_dropout

            missing = config.model.options["clinical_missing"]
            self.clinical_dropout = clinical_dropout(self, config, missing, seed=self.seed + 4)

    def order(self, generator):
        import torch

        return torch.randperm(len(self.bags), generator=generator)

    def batch(self, items) -> tuple:
        import torch

        chosen = []
        for index in items.tolist():
            bag = self.bags.bag(index)  # (N, C, *S)
            if len(bag) > MAX_INSTANCES:
                keep = torch.randperm(len(bag), generator=self.sampling)[:MAX_INSTANCES].sort().values
                bag = bag[keep]
            chosen.append(self.augment(bag))
        x = padded(chosen)  # (B, N, C, *S)
        if self.bags.clinical is not None:
            clinical = self.bags.clinical[items]
            if self.clinical_dropout is not None:
                clinical = self.clinical_dropout(clinical)
            return (x, clinical), self.bags.y[items]
        return x, self.bags.y[items]
