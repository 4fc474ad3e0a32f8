"""Hybrid CNN-transformer: conv stages downsample, a transformer self-attends over the feature-map tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.layers import (
    ClassifierHead,
    ConvNormAct,
    GridPositionEmbedding,
    TransformerEncoder,
    conv_type,
)
from medattn.models.base import Classifier
from medattn.registry import MODELS


@MODELS.register("hybrid", description="conv stages then a transformer encoder over feature-map tokens")
class HybridTransformer(Classifier):
    """Conv stages (each halves the grid) -> 1x1 conv to embed_dim -> tokens + position -> encoder -> head.

    forward_features returns the encoded tokens laid back on their grid, (B, embed_dim, *grid), so
    CAM-style tools treat it like any CNN's last feature map; the head mean-pools the tokens.
    `pos_grid` is the grid side the positional embedding is stored at (7 = a 28-pixel input with two
    stages); other grids are served by interpolating it.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64),
        embed_dim: int = 96,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pos_grid: int = 7,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        widths = tuple(widths)
        if not widths or embed_dim % heads:
            raise ConfigError(
                f"hybrid needs widths and embed_dim divisible by heads; got {widths}, {embed_dim}, {heads}"
            )
        stages: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            stages += [
                ConvNormAct(channels, width, spatial_dims=spatial_dims, stride=2),
                ConvNormAct(width, width, spatial_dims=spatial_dims),
            ]
            channels = width
        self.stages = nn.Sequential(*stages)
        self.embed = conv_type(spatial_dims)(channels, embed_dim, 1)
        self.pos_embed = GridPositionEmbedding(embed_dim, spatial_dims=spatial_dims, grid=pos_grid)
        self.encoder = TransformerEncoder(embed_dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout)
        self.feature_channels = embed_dim
        self.head = ClassifierHead(embed_dim, num_classes, spatial_dims=spatial_dims, dropout=dropout)
        self._record(
            "hybrid",
            widths=widths,
            embed_dim=embed_dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            pos_grid=pos_grid,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.embed(self.stages(x))  # (B, D, *grid), grid = spatial / 2 ** len(widths)
        grid = fmap.shape[2:]
        tokens = fmap.flatten(2).transpose(1, 2) + self.pos_embed(grid)  # (B, N, D)
        tokens = self.encoder(tokens)  # (B, N, D)
        return tokens.transpose(1, 2).reshape(fmap.shape)  # (B, D, *grid)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # mean over tokens -> (B, num_classes)
