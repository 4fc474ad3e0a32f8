"""Does the map point at the lesion? Scores of one map (*S) against a mask (*S) on the same grid.

- energy_inside: the share of the positive attribution inside the mask (the energy-based pointing game of
  Score-CAM, Wang et al. 2020). A map of uniform noise scores the mask's share of the image (`mask_fraction`).
- max_hit: whether the map's maximum lies in the mask (the pointing game, Zhang et al. 2018).
"""

from __future__ import annotations

import numpy as np


def localisation(heat: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0, None)
    inside = np.asarray(mask, dtype=bool).reshape(heat.shape)
    total = heat.sum()
    energy = float(heat[inside].sum() / total) if total > 0 else float("nan")
    peak = np.flatnonzero(heat.ravel() == heat.max()) if total > 0 else np.arange(heat.size)
    return {
        "energy_inside": energy,
        "max_hit": float(inside.ravel()[peak].mean()),  # ties share the hit
        "mask_fraction": float(inside.mean()),
    }
