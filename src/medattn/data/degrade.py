"""Degraded copies of images, to learn their restoration: `noise=0.05` (denoising) or `downsample=2`
(super-resolution). The image is the target; its degraded copy, on the same grid, is the source.

- noise=s:      Gaussian noise of standard deviation s times the image's intensity range (max - min);
- downsample=f: the mean of each f-sided block (per spatial axis), brought back to the grid by linear
                interpolation: what a scanner f times coarser would give, at the original grid.
Each copy is drawn from its own seeded generator, so a run and its evaluation see the same pairs.
"""

from __future__ import annotations

import numpy as np

from medattn.errors import ConfigError

KINDS = ("noise", "downsample")


def parse_degrade(text: str) -> tuple[str, float]:
    """ "noise=0.05" -> ("noise", 0.05); "downsample=2" -> ("downsample", 2.0)."""
    kind, _, value = str(text).partition("=")
    try:
        amount = float(value)
    except ValueError:
        amount = float("nan")
    if kind not in KINDS or not np.isfinite(amount) or amount <= 0:
        raise ConfigError(f"data.degrade {text!r}: expected noise=<fraction of the range> or downsample=<factor>")
    if kind == "downsample" and (amount != int(amount) or amount < 2):
        raise ConfigError(f"data.degrade {text!r}: the downsampling factor is a whole number of at least 2")
    return kind, amount


def degrade(image: np.ndarray, text: str, *, seed: int) -> np.ndarray:
    """The degraded copy of `image` (C, *S) as float32, on the same grid."""
    import torch
    import torch.nn.functional as F

    kind, amount = parse_degrade(text)
    x = image.astype(np.float32)
    if kind == "noise":
        spread = float(x.max() - x.min()) or 1.0
        noise = np.random.default_rng(seed).normal(0.0, amount * spread, size=x.shape).astype(np.float32)
        return x + noise
    factor, spatial = int(amount), x.shape[1:]
    tensor = torch.from_numpy(np.ascontiguousarray(x))[None]  # (1, C, *S)
    pool = F.avg_pool2d if len(spatial) == 2 else F.avg_pool3d
    coarse = pool(tensor, factor, ceil_mode=True, count_include_pad=False)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    return F.interpolate(coarse, size=spatial, mode=mode, align_corners=False)[0].numpy()
