"""Spatial attention: CBAM (Woo et al. 2018) and the additive attention gate (Oktay et al. 2018).

Every sigmoid that produces an attention map is a named submodule (`gate`, or `attend` for the
attention gate), so a forward hook records the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medattn.layers.factories import adaptive_avg_pool_type, adaptive_max_pool_type, conv_type


class SpatialAttention(nn.Module):
    """CBAM spatial branch: channel mean and max -> k x k conv -> sigmoid map (B, 1, *spatial)."""

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = conv_type(spatial_dims)(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *spatial)
        summary = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, ...)
        return x * self.gate(self.conv(summary))  # map (B, 1, *spatial) broadcast over C


class ChannelGate(nn.Module):
    """CBAM channel branch: a shared MLP on the average- and max-pooled vectors, summed -> sigmoid."""

    def __init__(self, channels: int, *, spatial_dims: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        conv = conv_type(spatial_dims)
        self.avg_pool = adaptive_avg_pool_type(spatial_dims)(1)
        self.max_pool = adaptive_max_pool_type(spatial_dims)(1)
        self.mlp = nn.Sequential(conv(channels, hidden, 1), nn.ReLU(), conv(hidden, channels, 1))
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *spatial)
        weights = self.gate(self.mlp(self.avg_pool(x)) + self.mlp(self.max_pool(x)))  # (B, C, 1, ...)
        return x * weights


class CBAM(nn.Module):
    """Convolutional block attention module: channel gate, then spatial gate. Shape preserved."""

    def __init__(self, channels: int, *, spatial_dims: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, spatial_dims=spatial_dims, reduction=reduction)
        self.spatial = SpatialAttention(spatial_dims, kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *spatial)
        return self.spatial(self.channel(x))


class AttentionGate(nn.Module):
    """Additive attention gate of Attention U-Net: weights a skip connection by a coarser gating signal.

    alpha = sigmoid(psi(relu(W_x skip + W_g gating))), with the gating term resized to the skip's grid;
    returns skip * alpha. `attend` is the sigmoid, so a hook records alpha (B, 1, *skip_spatial).
    """

    def __init__(self, *, spatial_dims: int, skip_channels: int, gating_channels: int, inter_channels: int) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.spatial_dims = spatial_dims
        self.skip_proj = conv(skip_channels, inter_channels, 1, bias=False)  # W_x
        self.gating_proj = conv(gating_channels, inter_channels, 1)  # W_g
        self.act = nn.ReLU()
        self.psi = conv(inter_channels, 1, 1)
        self.attend = nn.Sigmoid()

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        # skip (B, Cs, *S); gating (B, Cg, *G), G usually S / 2
        gate_term = self.gating_proj(gating)  # (B, inter, *G)
        if gate_term.shape[2:] != skip.shape[2:]:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            gate_term = F.interpolate(gate_term, size=skip.shape[2:], mode=mode, align_corners=False)
        alpha = self.attend(self.psi(self.act(self.skip_proj(skip) + gate_term)))  # (B, 1, *S)
        return skip * alpha
