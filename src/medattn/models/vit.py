"""A small vision transformer for 2D images and 3D volumes (Dosovitskiy et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.layers import ClassifierHead, GridPositionEmbedding, TransformerEncoder, conv_type
from medattn.models.base import Classifier
from medattn.registry import MODELS


@MODELS.register("vit", description="small vision transformer: patch tokens + cls token, 2D or 3D")
class VisionTransformer(Classifier):
    """Patch embedding (conv, kernel = stride = patch_size) -> cls token + position -> encoder -> head on cls.

    forward_features returns all tokens (B, 1 + N, embed_dim), cls first. The positional embedding is
    stored for a `pos_grid`-sided patch grid (7 = a 28-pixel input with 4-pixel patches) and
    interpolated for other input sizes; input sides must be multiples of patch_size.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        patch_size: int = 4,
        embed_dim: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pos_grid: int = 7,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        if embed_dim % heads:
            raise ConfigError(f"vit embed_dim {embed_dim} must be divisible by heads {heads}")
        self.patch_size = patch_size
        self.patch_embed = conv_type(spatial_dims)(in_channels, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = GridPositionEmbedding(embed_dim, spatial_dims=spatial_dims, grid=pos_grid)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(embed_dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout)
        self.feature_channels = embed_dim
        self.head = ClassifierHead(embed_dim, num_classes, spatial_dims=spatial_dims, dropout=dropout)
        # the head reads the class token alone, so CAMs take the patch tokens entering the last block
        self.cam_layer = f"encoder.blocks.{depth - 1}.norm1"
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)
        self._record(
            "vit",
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            pos_grid=pos_grid,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if any(side % self.patch_size for side in x.shape[2:]):
            raise ValueError(f"input sides {tuple(x.shape[2:])} must be multiples of patch_size {self.patch_size}")
        patches = self.patch_embed(x)  # (B, D, *grid), grid = spatial / patch_size
        tokens = patches.flatten(2).transpose(1, 2) + self.pos_embed(patches.shape[2:])  # (B, N, D)
        cls = (self.cls_token + self.cls_pos).expand(x.shape[0], -1, -1)  # (B, 1, D)
        tokens = self.dropout(torch.cat([cls, tokens], dim=1))  # (B, 1 + N, D)
        return self.encoder(tokens)  # (B, 1 + N, D)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features[:, 0])  # cls token (B, D) -> (B, num_classes)
