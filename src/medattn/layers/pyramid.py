"""Feature pyramid (Lin et al. 2017): backbone maps of several strides -> maps of one width, each enriched with
the coarser ones above it (1x1 lateral convs, nearest upsampling, sum, 3x3 conv). 2D and 3D."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.layers.factories import ConvNormAct, conv_type


class FeaturePyramid(nn.Module):
    """(B, in_channels[i], *S_i) maps, finest first -> (B, channels, *S_i) maps, finest first."""

    def __init__(self, in_channels: Sequence[int], channels: int, *, spatial_dims: int, norm: str = "batch") -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.lateral = nn.ModuleList([conv(c, channels, 1) for c in in_channels])
        self.output = nn.ModuleList(
            [ConvNormAct(channels, channels, spatial_dims=spatial_dims, norm=norm, act="silu") for _ in in_channels]
        )

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        merged = [lateral(x) for lateral, x in zip(self.lateral, maps, strict=True)]
        for level in range(len(merged) - 2, -1, -1):  # top-down: each map gets the coarser one, upsampled
            merged[level] = merged[level] + F.interpolate(merged[level + 1], size=merged[level].shape[2:])
        return [output(x) for output, x in zip(self.output, merged, strict=True)]
