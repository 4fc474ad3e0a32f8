"""Training batches of a denoiser: augmented clean images, noised at a random step, with their class (dropped for a
share of them, so the same network learns the unconditional noise classifier-free guidance needs)."""

from __future__ import annotations

from medattn.config import RunConfig
from medattn.data.image_batches import ImageTrainSet
from medattn.tasks.synthesis.diffusion import STEPS, UNCONDITIONAL, cosine_alpha_bar, noised, pack, velocity


class DiffusionTrainSet(ImageTrainSet):
    """Batches (packed input (B, C + 2, *S), velocity (B, C, *S)): the network learns v (diffusion.py)."""

    def __init__(self, x, y, *, seed: int) -> None:
        super().__init__(x, y, seed=seed)
        self.alpha_bar = cosine_alpha_bar()
        self.noise = None

    def configure(self, config: RunConfig) -> None:
        import torch

        super().configure(config)
        self.noise = torch.Generator().manual_seed(self.seed + 3)  # steps, noise and dropped classes
        self.generators["noise"] = self.noise
        self.rank_generators.append(self.noise)

    def batch(self, items) -> tuple:
        import torch

        x0 = self.augment(self.x[items])  # (B, C, *S) standardised clean images
        batch = len(x0)
        step = torch.randint(0, STEPS, (batch,), generator=self.noise)
        noise = torch.randn(x0.shape, generator=self.noise)
        keep = torch.rand(batch, generator=self.noise) >= UNCONDITIONAL
        label = (self.y[items] + 1) * keep  # class index + 1, or 0 (no class)
        target = velocity(x0, step, noise, self.alpha_bar)
        return pack(noised(x0, step, noise, self.alpha_bar), step, label), target


def validation_batch(x, y, *, seed: int = 0):
    """The same noised validation set every epoch (steps evenly spread, seeded noise), so its loss is comparable
    from epoch to epoch: (packed input, velocity)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    step = torch.linspace(0, STEPS - 1, len(y)).round().long()
    step = step[torch.randperm(len(y), generator=generator)]
    noise, alpha_bar = torch.randn(x.shape, generator=generator), cosine_alpha_bar()
    return pack(noised(x, step, noise, alpha_bar), step, y + 1), velocity(x, step, noise, alpha_bar)
