"""The two trivial baselines every translation result is shown beside, fitted on the training split:

- `mean_image`: the mean training target (pixel by pixel, at the median training shape; resized linearly to
  each image's grid): what a model that ignores its input would give at best in L2;
- `intensity_mapping`: one global map from the source's intensities to the target's, per target channel a least
  squares fit of 1, x_c and x_c^2 over every source channel c and every training voxel: what a contrast change
  without anatomy would give.
A model that does not beat the mean image has learned nothing. Both work on standardised intensities and are
kept in RUN/baselines.safetensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = "baselines.safetensors"
MAX_VOXELS = 500_000  # a fixed, evenly spaced subsample of the training voxels fits the mapping


def _resize(image, shape):
    """(C, *S) tensor -> (C, *shape), linearly."""
    import torch.nn.functional as F

    if tuple(image.shape[1:]) == tuple(shape):
        return image
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(image[None], size=tuple(shape), mode=mode, align_corners=False)[0]


def _features(x):
    """(Cs, *S) -> (N voxels, 1 + 2 Cs): 1, x_c, x_c^2."""
    import torch

    flat = x.flatten(1).T.double()  # (N, Cs)
    return torch.cat([torch.ones(len(flat), 1, dtype=flat.dtype), flat, flat.square()], dim=1)


def fit_baselines(train_x: list, train_y: list) -> dict:
    """{"mean_image": (Ct, *S) float32, "mapping": (Ct, 1 + 2 Cs) float64} from standardised training pairs."""
    import torch

    shape = [int(v) for v in np.median(np.asarray([y.shape[1:] for y in train_y]), axis=0)]
    mean = torch.stack([_resize(y, shape) for y in train_y]).mean(dim=0)
    features = torch.cat([_features(x) for x in train_x])
    targets = torch.cat([y.flatten(1).T.double() for y in train_y])  # (N, Ct)
    step = max(1, len(features) // MAX_VOXELS)
    solution = torch.linalg.lstsq(features[::step], targets[::step]).solution  # (1 + 2 Cs, Ct)
    return {"mean_image": mean.float().contiguous(), "mapping": solution.T.contiguous()}


def save_baselines(run: Path, baselines: dict) -> None:
    from medattn.runs import atomic_save_safetensors

    atomic_save_safetensors(run / FILE, baselines)


def load_baselines(run: Path) -> dict:
    from safetensors.torch import load_file

    from medattn.runs import run_file

    with run_file(run, FILE):
        return load_file(run / FILE)


def baseline_predictions(baselines: dict, x) -> dict:
    """{"mean_image": (Ct, *S), "intensity_mapping": (Ct, *S)} standardised, for a standardised source (Cs, *S)."""
    shape = tuple(x.shape[1:])
    mapped = (_features(x) @ baselines["mapping"].T).T.reshape(-1, *shape)  # (Ct, *S)
    return {"mean_image": _resize(baselines["mean_image"], shape), "intensity_mapping": mapped.float()}
