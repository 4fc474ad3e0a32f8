"""The early CNNs, sized for small medical images: AlexNet, VGG-11/16 with batch norm, and the seed's example.

Each keeps a 28x28 input alive: 3x3 stride-1 stems and ceil-mode max-pools (a one-pixel grid stays one pixel), so
one network takes 28-128 px pictures and 16-64 voxel volumes. `width` scales every layer (1.0 = the paper's
widths; the defaults are halved for CPU training), and `attention` (se, eca, cbam) can end every conv stage.
The dense layers of the originals are kept, after a global average pool, as the head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medattn.layers import ConvNormAct, MultiHeadAttention, max_pool_type
from medattn.models.base import Classifier, check_choice
from medattn.models.resnet import ATTENTIONS, attention_module
from medattn.registry import MODELS

POOL = "M"
LAYOUTS = {  # convolution widths, with POOL where the grid halves (the attention comes just before it)
    "alexnet": [64, POOL, 192, POOL, 384, 256, 256, POOL],
    "vgg11": [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    "vgg16": [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
}


class DenseHead(nn.Module):
    """Global average pool -> (linear -> ReLU -> dropout) per hidden width -> linear to the classes."""

    def __init__(self, in_channels: int, hidden: Sequence[int], num_classes: int, *, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_channels, width), nn.ReLU(), nn.Dropout(dropout)]
            in_channels = width
        layers.append(nn.Linear(in_channels, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, C, *grid)
        return self.mlp(features.flatten(2).mean(dim=2))  # (B, num_classes)


class LayeredCNN(Classifier):
    """Conv-norm-ReLU layers as `layout` lists them, max-pools at POOL, then a DenseHead."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        layout: Sequence[int | str],
        width: float,
        hidden: Sequence[int],
        attention: str,
        dropout: float,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        check_choice("attention", attention, ATTENTIONS)
        layers: list[nn.Module] = []
        channels = in_channels
        for step in layout:
            if step == POOL:
                layers.append(attention_module(attention, channels, spatial_dims=spatial_dims, reduction=8))
                layers.append(max_pool_type(spatial_dims)(2, ceil_mode=True))
                continue
            out = max(8, round(int(step) * width))
            layers.append(ConvNormAct(channels, out, spatial_dims=spatial_dims))
            channels = out
        self.features = nn.Sequential(*layers)
        self.feature_channels = channels
        self.head = DenseHead(channels, [max(16, round(h * width)) for h in hidden], num_classes, dropout=dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, *grid)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


def _layered(name: str, hidden: tuple[int, ...]):
    def build(
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        width: float = 0.5,
        attention: str = "none",
        dropout: float = 0.5,
    ) -> LayeredCNN:
        model = LayeredCNN(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            layout=LAYOUTS[name],
            width=width,
            hidden=hidden,
            attention=attention,
            dropout=dropout,
        )
        model._record(name, width=width, attention=attention, dropout=dropout)
        return model

    return build


MODELS.register("alexnet", description="AlexNet's five convolutions and two dense layers, small-input stem")(
    _layered("alexnet", (1024, 1024))
)
MODELS.register("vgg11", description="VGG-11 with batch norm (8 convolutions), ceil-mode pools for small inputs")(
    _layered("vgg11", (1024, 1024))
)
MODELS.register("vgg16", description="VGG-16 with batch norm (13 convolutions), ceil-mode pools for small inputs")(
    _layered("vgg16", (1024, 1024))
)


@MODELS.register("seed_cnn", description="the seed's example: 3 convolutions, 2 max-pools, self-attention, 2 dense")
class SeedCNN(Classifier):
    """Three conv layers with two max-pools, then the attention the seed's example meant: multi-head
    self-attention over the feature-map positions (a residual, layer-normed block whose softmax is `attend`),
    then two dense layers."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 64),
        heads: int = 4,
        hidden: int = 64,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        widths = tuple(widths)
        pool = max_pool_type(spatial_dims)
        self.convs = nn.Sequential(
            ConvNormAct(in_channels, widths[0], spatial_dims=spatial_dims),
            pool(2, ceil_mode=True),
            ConvNormAct(widths[0], widths[1], spatial_dims=spatial_dims),
            pool(2, ceil_mode=True),
            ConvNormAct(widths[1], widths[2], spatial_dims=spatial_dims),
        )
        self.norm = nn.LayerNorm(widths[2])
        self.attention = MultiHeadAttention(widths[2], heads=heads)
        self.feature_channels = widths[2]
        self.head = DenseHead(widths[2], [hidden], num_classes, dropout=dropout)
        self._record("seed_cnn", widths=widths, heads=heads, hidden=hidden, dropout=dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.convs(x)  # (B, C, *g)
        tokens = grid.flatten(2).transpose(1, 2)  # (B, N, C)
        tokens = tokens + self.attention(self.norm(tokens))  # every position attends to every other
        return tokens.transpose(1, 2).reshape(grid.shape)  # (B, C, *g): a feature map CAMs can read

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)
