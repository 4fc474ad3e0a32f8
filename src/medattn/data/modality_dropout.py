"""Modality dropout: training images with whole modalities left out, so a model fused over named modalities
(models/fusion.py) learns to work on any non-empty subset of them.

Each modality of each image is dropped with probability p, independently; an image that would lose all of them
keeps one, drawn uniformly. A dropped modality's channels become NaN, the same mark an absent modality has at
evaluation (`--missing`) and prediction, which the fusion model reads as "absent".
"""

from __future__ import annotations


class ModalityDropout:
    def __init__(self, count: int, p: float, *, seed: int) -> None:
        import torch

        self.count, self.p = count, p
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x):
        """x (B, C, *S), its C channels in `count` equal groups -> a copy with dropped groups set to NaN."""
        import torch

        batch = len(x)
        drop = torch.rand(batch, self.count, generator=self.generator) < self.p  # (B, M)
        kept = torch.randint(0, self.count, (batch,), generator=self.generator)
        everything = drop.all(dim=1)
        drop[everything, kept[everything]] = False  # at least one modality stays
        mask = drop.repeat_interleave(x.shape[1] // self.count, dim=1)  # (B, C)
        return x.masked_fill(mask[(...,) + (None,) * (x.ndim - 2)], float("nan"))


def modality_dropout(train_set, config, *, seed: int) -> ModalityDropout | None:
    """The dropout `config.train.modality_dropout` asks for (None when 0), its generator registered with the
    train set's checkpointed and per-rank streams."""
    if not config.train.modality_dropout:
        return None
    dropout = ModalityDropout(len(config.data.modalities), config.train.modality_dropout, seed=seed)
    train_set.generators["modality_dropout"] = dropout.generator
    train_set.rank_generators.append(dropout.generator)
    return dropout
