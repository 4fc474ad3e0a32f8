"""Training-time augmentation chosen in the run config (`data.augment`), 2D and 3D.

Built-in operations run on the whole batch at once with per-sample random parameters, which costs well
under a millisecond per batch on a CPU (a per-sample pipeline costs about 2 ms per 28x28 image here,
more than the model itself). Any MONAI array transform can be added by name, e.g.
`{name: monai.RandGaussianSmooth, prob: 0.2, sigma_x: [0.5, 1.0]}`; those run per sample, only on the
samples drawn with their `prob` (drawn here, batched, so a rare transform costs nothing on the others).
MONAI's intensity transforms are written for raw scans, whose background is 0 (a bias field multiplies,
Rician noise takes a magnitude), while these images are standardised around 0: each image is shifted so
its darkest value is 0 before a MONAI transform and shifted back after.
Named presets per modality (`data.augment: mr`) live in data/presets.py.

Built-in operations (all keys optional except name):
- flip:      prob, axes (spatial axes, negative from the end; default all)
- affine:    prob, rotate_deg, scale (fraction), translate (fraction of the size)
- noise:     prob, std (in standardised units)
- intensity: prob, scale (fraction), shift (standardised units)
- speckle:   prob, std (multiplicative noise about the darkest value, as in ultrasound)
- mosaic:    prob (boxes only: tiles of several images with their boxes in one training input; the detection
             task's box-aware augmentation runs it, with flip and affine moving the boxes too)
"""

from __future__ import annotations

import math
from typing import Any

from medattn.errors import ConfigError

BUILTIN = {
    "flip": {"prob", "axes"},
    "affine": {"prob", "rotate_deg", "scale", "translate"},
    "noise": {"prob", "std"},
    "intensity": {"prob", "scale", "shift"},
    "speckle": {"prob", "std"},
    "mosaic": {"prob"},
}
BOXES_ONLY = ("mosaic",)  # operations that need boxes to follow the pixels


def check_spec(spec: dict[str, Any]) -> str:
    """The operation's name, after checking it and its keys (MONAI options are checked when it is built)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"data.augment entries need a 'name', found {spec!r}")
    name = spec["name"]
    if name.startswith("monai."):
        return name
    if name not in BUILTIN:
        raise ConfigError(
            f"data.augment: unknown operation {name!r} (built-in: {', '.join(BUILTIN)}; or monai.<TransformName>)"
        )
    unknown = set(spec) - BUILTIN[name] - {"name"}
    if unknown:
        raise ConfigError(f"data.augment {name}: unknown key(s) {', '.join(sorted(unknown))}")
    return name


def _monai_transform(spec: dict[str, Any], seed: int):
    """The transform, built to always apply, and the probability of applying it (None: it has no `prob`)."""
    import inspect

    import monai.transforms

    cls_name = spec["name"].removeprefix("monai.")
    cls = getattr(monai.transforms, cls_name, None)
    transform_type, dictionary_type = monai.transforms.Transform, monai.transforms.MapTransform
    if not (isinstance(cls, type) and issubclass(cls, transform_type)) or issubclass(cls, dictionary_type):
        raise ConfigError(f"data.augment: {spec['name']} is not a MONAI array transform")
    options = {k: v for k, v in spec.items() if k != "name"}
    prob = None
    parameter = inspect.signature(cls).parameters.get("prob")
    if parameter is not None:
        prob = float(options.pop("prob", parameter.default))
        options["prob"] = 1.0
    try:
        transform = cls(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"data.augment {spec['name']}: {error}") from error
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=seed)
    return transform, prob


class Augment:
    """Callable on a batch (B, C, *spatial); deterministic for a seed."""

    def __init__(self, specs: list[dict[str, Any]], *, spatial_dims: int, seed: int) -> None:
        import torch

        self.specs = [dict(s) for s in specs]
        self.names = [check_spec(s) for s in self.specs]
        for name in self.names:
            if name in BOXES_ONLY:
                raise ConfigError(f"data.augment {name}: combines images with their boxes; only box data takes it")
        self.spatial_dims = spatial_dims
        self.generator = torch.Generator().manual_seed(seed)
        self.monai = {
            i: _monai_transform(s, seed + i) for i, s in enumerate(self.specs) if self.names[i].startswith("monai.")
        }

    def state(self):
        return self.generator.get_state()

    def set_state(self, state) -> None:
        self.generator.set_state(state)

    def __call__(self, x):
        for i, (name, spec) in enumerate(zip(self.names, self.specs, strict=True)):
            if i in self.monai:
                x = self._per_sample(x, *self.monai[i], name=name)
            else:
                x = getattr(self, f"_{name}")(x, spec)
        return x

    def _per_sample(self, x, transform, prob: float | None, *, name: str):
        import torch

        chosen = range(len(x)) if prob is None else self._chosen(x, prob).nonzero().flatten().tolist()
        if not chosen:
            return x
        x = x.clone()
        for j in chosen:
            low = x[j].amin()  # the darkest value becomes 0, as in a raw scan
            out = torch.as_tensor(transform(x[j] - low)).as_subclass(torch.Tensor)
            if out.shape != x[j].shape:
                raise ConfigError(
                    f"data.augment {name} changed an image of shape {list(x[j].shape)} to {list(out.shape)}: "
                    "only transforms that keep the shape can augment a batch"
                )
            x[j] = out + low
        return x

    def _chosen(self, x, prob: float):
        import torch

        return torch.rand(x.shape[0], generator=self.generator) < prob  # (B,)

    def _flip(self, x, spec):
        import torch

        axes = spec.get("axes") or list(range(-self.spatial_dims, 0))
        for axis in axes:
            if not -self.spatial_dims <= axis < self.spatial_dims:
                raise ConfigError(f"data.augment flip: axis {axis} out of range for {self.spatial_dims}D images")
            dim = axis if axis < 0 else axis + 2
            mask = self._chosen(x, spec.get("prob", 0.5)).view(-1, *[1] * (x.ndim - 1))
            x = torch.where(mask, x.flip(dim), x)
        return x

    def _affine(self, x, spec):
        import torch
        import torch.nn.functional as F

        batch, dims = x.shape[0], self.spatial_dims
        chosen = self._chosen(x, spec.get("prob", 0.8)).float()
        uniform = lambda *shape: torch.rand(*shape, generator=self.generator) * 2 - 1  # noqa: E731
        angle = math.radians(spec.get("rotate_deg", 10.0))
        rotation = torch.eye(dims).repeat(batch, 1, 1)
        # one rotation per plane: (y, x) in 2D; (d, h), (d, w), (h, w) in 3D
        for a, b in [(i, j) for i in range(dims) for j in range(i + 1, dims)]:
            theta = uniform(batch) * angle * chosen
            plane = torch.eye(dims).repeat(batch, 1, 1)
            plane[:, a, a], plane[:, a, b] = torch.cos(theta), -torch.sin(theta)
            plane[:, b, a], plane[:, b, b] = torch.sin(theta), torch.cos(theta)
            rotation = rotation @ plane
        scale = 1 + uniform(batch, dims) * spec.get("scale", 0.1) * chosen[:, None]
        shift = uniform(batch, dims) * 2 * spec.get("translate", 0.05) * chosen[:, None]
        matrix = rotation * scale[:, None, :]
        theta = torch.cat([matrix, shift[:, :, None]], dim=2)  # (B, dims, dims + 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _noise(self, x, spec):
        import torch

        mask = self._chosen(x, spec.get("prob", 0.2)).view(-1, *[1] * (x.ndim - 1))
        noise = torch.randn(x.shape, generator=self.generator) * spec.get("std", 0.1)
        return x + noise * mask

    def _intensity(self, x, spec):
        import torch

        mask = self._chosen(x, spec.get("prob", 0.5)).float().view(-1, *[1] * (x.ndim - 1))
        shape = (x.shape[0], *[1] * (x.ndim - 1))
        scale = 1 + (torch.rand(shape, generator=self.generator) * 2 - 1) * spec.get("scale", 0.1) * mask
        shift = (torch.rand(shape, generator=self.generator) * 2 - 1) * spec.get("shift", 0.1) * mask
        return x * scale + shift

    def _speckle(self, x, spec):
        import torch

        # skimage's "speckle" (x + x * n) about each image's darkest value, which stays dark (no echo)
        mask = self._chosen(x, spec.get("prob", 0.3)).view(-1, *[1] * (x.ndim - 1))
        low = x.amin(dim=tuple(range(1, x.ndim)), keepdim=True)  # (B, 1, ...)
        gain = 1 + torch.randn(x.shape, generator=self.generator) * spec.get("std", 0.1) * mask
        return low + (x - low) * gain.clamp_min(0)
