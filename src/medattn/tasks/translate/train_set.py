"""Translation batches: one random patch per training pair an epoch, the same crop and geometry for the source
and the target, intensity augmentation on the source alone.

`data.augment`'s flip and affine run on the source and target stacked on the channels (both are intensities, so
both are sampled linearly); noise, intensity, speckle and MONAI intensity transforms touch the source only (the
target is what the model must reproduce). A MONAI spatial transform would move the source away from its target,
so it is refused. The target handed to the loss is the target and the source stacked, (B, Ct + Cs, *S): a
conditional discriminator sees both.
"""

from __future__ import annotations

from medattn.config import RunConfig
from medattn.errors import ConfigError

GEOMETRY = ("flip", "affine")


class PairTrainSet:
    def __init__(self, data, config: RunConfig) -> None:
        import torch

        self.data = data
        self.patch = tuple(data.patch)
        self.seed = config.train.seed
        self.positions = torch.Generator().manual_seed(self.seed + 3)
        self.generators = {"patches": self.positions}
        self.rank_generators = [self.positions]
        self.geometry = self.intensity = None

    def __len__(self) -> int:
        return len(self.data.train_x)

    def configure(self, config: RunConfig) -> None:
        from medattn.data.augment import Augment, check_spec

        specs = config.data.augment
        names = [check_spec(s) for s in specs]
        dims = self.data.spatial_dims
        self.geometry = Augment(
            [s for s, n in zip(specs, names, strict=True) if n in GEOMETRY], spatial_dims=dims, seed=self.seed + 1
        )
        self.intensity = Augment(
            [s for s, n in zip(specs, names, strict=True) if n not in GEOMETRY], spatial_dims=dims, seed=self.seed + 2
        )
        for transform, _ in self.intensity.monai.values():
            if type(transform).__module__.startswith("monai.transforms.spatial"):
                raise ConfigError(
                    f"data.augment: {type(transform).__name__} would move the source away from its target; for "
                    "translation use the built-in flip and affine, which move both"
                )
        for name, augment in (("augment_geometry", self.geometry), ("augment_intensity", self.intensity)):
            self.generators[name] = augment.generator
            self.rank_generators.append(augment.generator)

    def order(self, generator):
        import torch

        return torch.randperm(len(self), generator=generator)

    def _start(self, shape) -> list[int]:
        import torch

        return [
            int(torch.randint(0, max(s - p, 0) + 1, (1,), generator=self.positions))
            for s, p in zip(shape, self.patch, strict=True)
        ]

    def batch(self, items) -> tuple:
        import torch

        from medattn.data.patches import crop, pad_values

        xs, ys = [], []
        for i in items.tolist():
            x, y = self.data.train_x[i], self.data.train_y[i]
            start = self._start(x.shape[1:])
            xs.append(crop(x, start, self.patch, pad_values(x)))
            ys.append(crop(y, start, self.patch, pad_values(y)))
        x, y = torch.stack(xs), torch.stack(ys)  # (B, Cs, *P), (B, Ct, *P)
        moved = self.geometry(torch.cat([x, y], dim=1))
        x, y = moved[:, : x.shape[1]], moved[:, x.shape[1] :]
        x = self.intensity(x.contiguous())
        return x, torch.cat([y, x], dim=1)  # the target first, then the source the discriminator is conditioned on
