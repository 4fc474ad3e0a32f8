"""Classification head: global average pool -> dropout -> linear."""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """Maps a feature map (B, C, *spatial), or already pooled features (B, C), to logits (B, num_classes)."""

    def __init__(self, in_channels: int, num_classes: int, *, spatial_dims: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2 + self.spatial_dims:  # (B, C, *spatial)
            features = features.flatten(2).mean(dim=2)  # (B, C)
        elif features.ndim != 2:
            raise ValueError(
                f"expected features (B, C) or (B, C, *spatial) with {self.spatial_dims} spatial axes, "
                f"got shape {tuple(features.shape)}"
            )
        return self.fc(self.dropout(features))  # (B, num_classes)
