"""Class activation maps from a layer's activations A (B, C, *g) and the gradients G of the target's score.

- Grad-CAM (Selvaraju et al. 2017): relu(sum_c mean_g(G_c) A_c).
- Grad-CAM++ (Chattopadhay et al. 2018): channel weights sum_g(alpha * relu(G)) with
  alpha = G^2 / (2 G^2 + sum_g(A) G^3), the closed form for an exponential score (as pytorch-grad-cam).
- HiResCAM (Draelos & Carin 2020): relu(sum_c G_c * A_c), element-wise, so the map is faithful to the
  gradient at every position.
The map is resized (linearly) to the input grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CAMS = ("gradcam", "gradcam++", "hirescam")


def cam(kind: str, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """(B, *g) non-negative map."""
    spatial = tuple(range(2, activation.ndim))
    if kind == "gradcam":
        weights = gradient.mean(dim=spatial, keepdim=True)  # (B, C, 1, ...)
        return F.relu((weights * activation).sum(dim=1))
    if kind == "gradcam++":
        squared, cubed = gradient**2, gradient**3
        total = activation.sum(dim=spatial, keepdim=True)
        denominator = 2 * squared + total * cubed
        alpha = squared / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        weights = (alpha * F.relu(gradient)).sum(dim=spatial, keepdim=True)
        return F.relu((weights * activation).sum(dim=1))
    if kind == "hirescam":
        return F.relu((gradient * activation).sum(dim=1))
    raise ValueError(f"unknown CAM {kind!r} (one of {', '.join(CAMS)})")


def resize_map(maps: torch.Tensor, size) -> torch.Tensor:
    """(B, *g) -> (B, *size), linear interpolation (nothing to do when the grids agree)."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(maps[:, None].float(), size=size, mode=mode, align_corners=False)[:, 0]
