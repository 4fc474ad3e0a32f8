"""RoIAlign (He et al. 2017) written with `grid_sample`, for 2D and 3D feature maps; no torchvision.

Each region is cut into `output_size` bins per axis; each bin averages `sampling` bilinear samples per axis, taken
at regular points inside it, never rounded to the feature grid. Boxes are in input pixel (voxel) coordinates
(layers/boxes.py: [lo..., hi...] along the array axes) and a feature map of `stride` has its cell i covering input
[i * stride, (i + 1) * stride): torchvision's `roi_align(..., aligned=True)`. Samples outside the map read 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    image_index: torch.Tensor,
    *,
    output_size: int,
    stride: float,
    sampling: int = 2,
) -> torch.Tensor:
    """(R, C, *[output_size] * D) pooled features of R boxes (R, 2D) on the maps `features` (B, C, *S).

    `image_index` (R,) says which map of the batch each box lies on.
    """
    dims = features.ndim - 2
    regions, channels = boxes.shape[0], features.shape[1]
    out = features.new_zeros((regions, channels, *[output_size] * dims))
    if regions == 0:
        return out
    steps = output_size * sampling
    # sample positions in [0, 1) of each box side: bin j, sample s at (j + (s + 0.5) / sampling) / output_size
    fraction = (torch.arange(steps, dtype=features.dtype, device=features.device) + 0.5) / steps
    lo, hi = boxes[:, :dims] / stride, boxes[:, dims:] / stride  # (R, D) in feature cells
    axes = [lo[:, a, None] + fraction[None] * (hi[:, a] - lo[:, a])[:, None] for a in range(dims)]  # D x (R, steps)
    sizes = features.shape[2:]
    normalised = [2 * axes[a] / sizes[a] - 1 for a in range(dims)]  # align_corners=False: cell edges at +-1
    mesh = torch.stack(torch.meshgrid(*[torch.arange(steps, device=features.device)] * dims, indexing="ij"), dim=-1)
    flat = mesh.reshape(-1, dims)  # (steps^D, D) indices of the sample along each axis
    # grid_sample takes coordinates last axis first (x = W, y = H, z = D)
    grid = torch.stack([normalised[a][:, flat[:, a]] for a in reversed(range(dims))], dim=-1)  # (R, steps^D, D)
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    for image in torch.unique(image_index):
        rows = torch.nonzero(image_index == image).flatten()
        # the samples of every box as one sampled map: (1, R_b * steps, steps[, steps], D)
        sample_grid = grid[rows].reshape(1, len(rows) * steps, *[steps] * (dims - 1), dims)
        sampled = F.grid_sample(
            features[int(image)][None], sample_grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (1, C, R_b * steps, steps[, steps])
        sampled = sampled.reshape(channels, len(rows), *[steps] * dims)  # boxes as channels of a pooling
        out[rows] = pool(sampled, sampling).movedim(0, 1)  # (R_b, C, *[output_size] * D)
    return out
