"""Channel attention: squeeze-and-excitation (Hu et al. 2018) and ECA (Wang et al. 2020).

Each multiplies a (B, C, *spatial) map by per-channel weights in (0, 1). The sigmoid is the
submodule `gate`, so a forward hook records the weights (B, C, 1, ...).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medattn.layers.factories import adaptive_avg_pool_type, conv_type


class SqueezeExcitation(nn.Module):
    """Global average pool -> 1x1 conv (C -> hidden) -> ReLU -> 1x1 conv (hidden -> C) -> sigmoid."""

    def __init__(self, channels: int, *, spatial_dims: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        conv = conv_type(spatial_dims)
        self.pool = adaptive_avg_pool_type(spatial_dims)(1)
        self.reduce = conv(channels, hidden, 1)
        self.act = nn.ReLU()
        self.expand = conv(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *spatial)
        weights = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))  # (B, C, 1, ...)
        return x * weights


def eca_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """The ECA paper's adaptive kernel: |(log2(C) + beta) / gamma| rounded down, then made odd."""
    k = int(abs((math.log2(channels) + beta) / gamma))
    return k if k % 2 else k + 1


class EfficientChannelAttention(nn.Module):
    """Global average pool -> 1D conv across neighbouring channels (no reduction) -> sigmoid."""

    def __init__(self, channels: int, *, spatial_dims: int, kernel_size: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size or eca_kernel_size(channels)
        self.pool = adaptive_avg_pool_type(spatial_dims)(1)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=self.kernel_size // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *spatial)
        pooled = self.pool(x)  # (B, C, 1, ...)
        batch, channels = pooled.shape[:2]
        mixed = self.conv(pooled.reshape(batch, 1, channels))  # (B, 1, C): conv along channels
        weights = self.gate(mixed.reshape(pooled.shape))  # (B, C, 1, ...)
        return x * weights
