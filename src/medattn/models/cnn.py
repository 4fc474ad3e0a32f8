"""A plain convolutional classifier: (conv -> pool) stages -> global average pool -> linear."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medattn.layers import ClassifierHead, ConvNormAct, max_pool_type, norm_layer
from medattn.models.base import Classifier
from medattn.registry import MODELS


@MODELS.register("cnn", description="plain conv-pool stack with a linear head; the no-attention baseline")
class PlainCNN(Classifier):
    """One ConvNormAct per width; 2x max-pool between stages (not after the last, to keep a CAM-sized map)."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (16, 32, 64),
        kernel_size: int = 3,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        norm_layer(norm, spatial_dims, 1)  # fails early, with the valid names, on an unknown norm
        widths = tuple(widths)
        stages: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            if index > 0:
                stages.append(max_pool_type(spatial_dims)(2))
            stages.append(ConvNormAct(channels, width, spatial_dims=spatial_dims, kernel_size=kernel_size, norm=norm))
            channels = width
        self.features = nn.Sequential(*stages)
        self.feature_channels = channels
        self.head = ClassifierHead(channels, num_classes, spatial_dims=spatial_dims, dropout=dropout)
        self._record("cnn", widths=widths, kernel_size=kernel_size, norm=norm, dropout=dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, widths[-1], *spatial / 2 ** (len(widths) - 1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, num_classes)
