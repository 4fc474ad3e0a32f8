"""Classification batches: a shuffle or class-balanced draws, augmentation, then mixup or CutMix."""

from __future__ import annotations

from medattn.config import RunConfig
from medattn.data.image_batches import ImageTrainSet
from medattn.data.modality_dropout import modality_dropout
from medattn.tasks.classify.mixing import Mixer


class ClassTrainSet(ImageTrainSet):
    """Targets come as (labels, partner, lam): partner and lam say how the batch was mixed (None, 1.0 if not)."""

    def __init__(self, x, y, *, num_classes: int, seed: int, clinical=None) -> None:
        super().__init__(x, y, seed=seed, clinical=clinical)
        self.num_classes = num_classes
        self.sampler = "shuffle"
        self.mixer = None
        self.dropout = None  # modality dropout, after augmentation and mixing

    def configure(self, config: RunConfig) -> None:
        import torch

        super().configure(config)
        self.sampler = config.train.sampler
        generator = torch.Generator().manual_seed(self.seed + 2)
        self.mixer = Mixer(mixup=config.train.mixup, cutmix=config.train.cutmix, generator=generator)
        self.generators["mixing"] = generator
        self.rank_generators.append(generator)
        self.dropout = modality_dropout(self, config, seed=self.seed + 3)

    def order(self, generator):
        """Indices of one epoch: a shuffle, or draws that give every class the same expected share."""
        import torch

        if self.sampler == "shuffle":
            return super().order(generator)
        labels = self.y if self.y.ndim == 1 else self.y.argmax(dim=1)
        counts = torch.bincount(labels, minlength=self.num_classes).float()
        weights = 1.0 / counts[labels]  # (N,) each class sums to 1
        return torch.multinomial(weights, len(labels), replacement=True, generator=generator)

    def batch(self, items) -> tuple:
        x, y = super().batch(items)
        x, clinical = x if isinstance(x, tuple) else (x, None)
        partner, lam = None, 1.0
        if self.mixer.active:
            x, partner, lam = self.mixer(x)
            if clinical is not None:  # the partner's clinical values mixed in the share its image was
                clinical = lam * clinical + (1 - lam) * clinical[partner]
        if self.dropout is not None:
            x = self.dropout(x)
        return (x if clinical is None else (x, clinical)), (y, partner, lam)
