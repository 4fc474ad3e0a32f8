"""Deletion and insertion curves (Petsiuk et al. 2018): is the map's ranking of voxels what the model uses?

Voxels are ranked by the map (highest first; ties broken at random). Deletion removes the top fraction
0, 1/steps, ..., 1 of them (blur or ROAD, removal.py) and follows the target's probability: a faithful map makes
it fall fast (low area). Insertion starts from the fully removed image and puts the top voxels back: the curve
should rise fast (high area). Areas are the trapezoid mean over the fractions, in the score's units.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from medattn.errors import ConfigError
from medattn.explain.removal import REMOVALS, blurred, road_fill


def ranking(heat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat voxel indices, most important first (a random tie-break, so a flat map ranks at random)."""
    flat = np.nan_to_num(np.asarray(heat, dtype=np.float64)).ravel()
    return np.lexsort((rng.random(flat.size), -flat))


def curves(
    curve: Callable[[torch.Tensor], np.ndarray],
    x: torch.Tensor,
    heat: np.ndarray,
    *,
    removal: str = "blur",
    steps: int = 10,
    rng: np.random.Generator,
) -> dict[str, float | list[float]]:
    """{"deletion_auc", "insertion_auc", "deletion", "insertion"} for one input x (1, C, *S) and its map (*S)."""
    if removal not in REMOVALS:
        raise ConfigError(f"--removal {removal!r}: one of {', '.join(REMOVALS)}")
    order = ranking(heat, rng)
    size = order.size
    counts = [round(size * k / steps) for k in range(steps + 1)]
    fill = blurred(x) if removal == "blur" else None
    deleted, inserted = [], []
    for count in counts:
        top = np.zeros(size, dtype=bool)
        top[order[:count]] = True
        top = top.reshape(heat.shape)
        keep = torch.from_numpy(top)
        if fill is None:
            deleted.append(road_fill(x, top, rng))
            inserted.append(road_fill(x, ~top, rng))
        else:
            deleted.append(torch.where(keep, fill, x))
            inserted.append(torch.where(keep, x, fill))
    scores = curve(torch.cat(deleted + inserted))
    deletion, insertion = scores[: steps + 1], scores[steps + 1 :]
    fractions = np.asarray(counts) / size
    return {
        "deletion_auc": float(np.trapezoid(deletion, fractions)),
        "insertion_auc": float(np.trapezoid(insertion, fractions)),
        "deletion": [float(v) for v in deletion],
        "insertion": [float(v) for v in insertion],
    }
