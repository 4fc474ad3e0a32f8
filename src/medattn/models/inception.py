"""GoogLeNet (Inception v1) for small medical images, 2D or 3D.

An inception block runs four branches side by side and stacks their channels: 1x1; 1x1 then 3x3; 1x1 then a
5x5 receptive field (two 3x3, as Inception v2 factorised it, cheaper in 3D); 3x3 max-pool then 1x1. The
original's 7x7 stride-2 stem and its auxiliary classifiers are left out: a 3x3 stride-1 stem keeps a 28x28
input, and the auxiliary heads only helped very deep training from scratch on ImageNet.
"""

from __future__ import annotations

import torch
from torch import nn

from medattn.layers import ConvNormAct, max_pool_type
from medattn.models.base import Classifier, check_choice
from medattn.models.classic import DenseHead
from medattn.models.resnet import ATTENTIONS, attention_module
from medattn.registry import MODELS

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) per block at width 1.0; POOL halves the grid
BLOCKS = [
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    "M",
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    "M",
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
]


class Inception(nn.Module):
    def __init__(self, in_channels: int, widths: tuple[int, ...], *, spatial_dims: int) -> None:
        super().__init__()
        one, reduce3, three, reduce5, five, project = widths
        conv = lambda a, b, k=1: ConvNormAct(a, b, spatial_dims=spatial_dims, kernel_size=k)  # noqa: E731
        self.branch1 = conv(in_channels, one)
        self.branch3 = nn.Sequential(conv(in_channels, reduce3), conv(reduce3, three, 3))
        self.branch5 = nn.Sequential(conv(in_channels, reduce5), conv(reduce5, five, 3), conv(five, five, 3))
        self.branch_pool = nn.Sequential(
            max_pool_type(spatial_dims)(3, stride=1, padding=1), conv(in_channels, project)
        )
        self.out_channels = one + three + five + project

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S)
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)  # (B, out_channels, *S)


@MODELS.register("googlenet", description="GoogLeNet: nine inception blocks (1x1, 3x3, 5x5 and pool branches)")
class GoogLeNet(Classifier):
    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        width: float = 0.5,
        attention: str = "none",
        dropout: float = 0.4,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        check_choice("attention", attention, ATTENTIONS)
        scale = lambda c: max(8, round(c * width))  # noqa: E731
        stem = scale(192)
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, scale(64), spatial_dims=spatial_dims),
            ConvNormAct(scale(64), stem, spatial_dims=spatial_dims),
        ]
        channels = stem
        for block in BLOCKS:
            if block == "M":
                layers.append(attention_module(attention, channels, spatial_dims=spatial_dims, reduction=8))
                layers.append(max_pool_type(spatial_dims)(2, ceil_mode=True))
                continue
            unit = Inception(channels, tuple(scale(c) for c in block), spatial_dims=spatial_dims)
            layers.append(unit)
            channels = unit.out_channels
        self.features = nn.Sequential(*layers)
        self.feature_channels = channels
        self.head = DenseHead(channels, [], num_classes, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self._record("googlenet", width=width, attention=attention, dropout=dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, *grid / 4)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))
