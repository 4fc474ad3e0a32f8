"""What replaces the pixels a faithfulness curve removes: a blurred copy, or noisy linear imputation (ROAD).

- blur: the image smoothed by a Gaussian (sigma = a twentieth of the mean side, at least 1 voxel), so removal
  takes away detail without adding edges the model never saw.
- road (Rong et al. 2022, "Remove and Debias"): every removed voxel becomes the mean of its face neighbours,
  solved as one sparse linear system with the kept voxels fixed, plus Gaussian noise (1% of the image's spread),
  so the shape of what was removed cannot leak through the fill. (ROAD also weights diagonal neighbours; face
  neighbours only here.)
"""

from __future__ import annotations

import numpy as np
import torch

REMOVALS = ("blur", "road")


def blurred(x: torch.Tensor) -> torch.Tensor:
    """(1, C, *S) each channel smoothed."""
    from scipy.ndimage import gaussian_filter

    sigma = max(1.0, float(np.mean(x.shape[2:])) / 20)
    return torch.from_numpy(np.stack([gaussian_filter(c, sigma) for c in x[0].numpy()])[None]).float()


def road_fill(x: torch.Tensor, removed: np.ndarray, rng: np.random.Generator, noise: float = 0.01) -> torch.Tensor:
    """(1, C, *S): x with the voxels of `removed` (*S bool) imputed from their neighbours, plus noise."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    image = x[0].numpy().astype(np.float64)  # (C, *S)
    shape = removed.shape
    unknown = np.flatnonzero(removed)
    out = image.reshape(image.shape[0], -1).copy()
    if len(unknown) == 0:
        return x.clone()
    if len(unknown) == removed.size:  # nothing known: the training mean (0 in standardised units)
        out[:, unknown] = 0.0
    else:
        position = -np.ones(removed.size, dtype=np.int64)
        position[unknown] = np.arange(len(unknown))
        coords = np.unravel_index(unknown, shape)
        rows, cols, vals = [], [], []
        diagonal = np.zeros(len(unknown))
        rhs = np.zeros((len(unknown), image.shape[0]))
        for axis in range(len(shape)):
            for step in (-1, 1):
                moved = list(coords)
                moved[axis] = coords[axis] + step
                inside = (moved[axis] >= 0) & (moved[axis] < shape[axis])
                neighbour = np.ravel_multi_index([m[inside] for m in moved], shape)
                index = np.flatnonzero(inside)
                diagonal[index] += 1
                free = position[neighbour] >= 0
                rows += [index[free]]
                cols += [position[neighbour[free]]]
                vals += [-np.ones(free.sum())]
                rhs[index[~free]] += out[:, neighbour[~free]].T
        rows = np.concatenate([np.arange(len(unknown)), *rows])
        cols = np.concatenate([np.arange(len(unknown)), *cols])
        vals = np.concatenate([diagonal, *vals])
        system = coo_matrix((vals, (rows, cols)), shape=(len(unknown),) * 2).tocsc()
        solved = spsolve(system, rhs)
        out[:, unknown] = np.asarray(solved).reshape(len(unknown), -1).T
    spread = image.std() * noise
    out[:, unknown] += rng.normal(0, spread, (image.shape[0], len(unknown)))
    return torch.from_numpy(out.reshape(image.shape)[None]).float()
