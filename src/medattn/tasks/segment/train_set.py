"""Segmentation batches: random patches (a share centred on labelled voxels), moved with their masks."""

from __future__ import annotations

from medattn.config import RunConfig
from medattn.data.modality_dropout import modality_dropout
from medattn.data.patches import PatchSampler

FOREGROUND_FRACTION = 0.33  # share of training patches centred on a labelled voxel (train.foreground_fraction)


class PatchTrainSet:
    """An epoch is ceil(case voxels / patch voxels) patches per case; each batch is augmented in pairs."""

    def __init__(self, seg, config: RunConfig) -> None:
        import torch

        fraction = config.train.foreground_fraction
        self.spatial_dims = seg.spatial_dims
        self.seed = config.train.seed
        positions = torch.Generator().manual_seed(self.seed + 3)
        self.sampler = PatchSampler(
            seg.train_x,
            seg.train_y,
            patch=seg.plan.patch,
            num_classes=seg.num_classes,
            foreground_fraction=FOREGROUND_FRACTION if fraction is None else fraction,
            generator=positions,
        )
        self.generators = {"patches": positions}
        self.rank_generators = [positions]
        self.augment = None
        self.dropout = None  # modality dropout, after augmentation
        self.clinical, self.clinical_dropout = seg.train_clinical, None  # (cases, F): each patch its case's vector

    def __len__(self) -> int:
        return len(self.sampler)

    def configure(self, config: RunConfig) -> None:
        from medattn.tasks.segment.augment import PairedAugment

        self.augment = PairedAugment(config.data.augment, spatial_dims=self.spatial_dims, seed=self.seed + 1)
        self.generators.update(self.augment.generators)
        self.rank_generators += list(self.augment.generators.values())
        self.dropout = modality_dropout(self, config, seed=self.seed + 4)
        if self.clinical is not None:
            from medattn.data.clinical_images import clinical_dropout

            missing = config.model.options["tabular"]["missing"]
            self.clinical_dropout = clinical_dropout(self, config, missing, seed=self.seed + 5)

    def order(self, generator):
        return self.sampler.epoch(generator)

    def batch(self, items) -> tuple:
        x, y = self.augment(*self.sampler.batch(items))  # items: the case of each patch
        x = x if self.dropout is None else self.dropout(x)
        if self.clinical is None:
            return x, y
        clinical = self.clinical[items]
        return (x, clinical if self.clinical_dropout is None else self.clinical_dropout(clinical)), y
