"""Two classic segmenters beside the U-Net family, 2D or 3D: FCN-8s and DeepLabv3+.

- `fcn`: a plain conv encoder (a max-pool after each level); per-class scores from the three deepest levels
  are fused coarse to fine, each upsampled to the next and added (Long et al. 2015's FCN-8s skips), then
  upsampled to the input.
- `deeplabv3plus`: a residual encoder whose last level is dilated instead of strided (output stride 8), atrous
  spatial pyramid pooling (parallel dilated 3x3 convolutions and an image-level pool), and a decoder that joins
  the pyramid's output with the stride-2 features (Chen et al. 2018). Dilation rates are scaled down from the
  paper's 6/12/18 for 32-128 px patches.

Upsampling is (bi/tri)linear to the exact size of the map it joins, so any input size works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError
from medattn.layers import ConvNormAct, adaptive_avg_pool_type, conv_type, max_pool_type, norm_layer
from medattn.models.resnet import ResidualBlock
from medattn.models.unet import Segmenter
from medattn.registry import MODELS

_MODE = {2: "bilinear", 3: "trilinear"}


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode=_MODE[x.ndim - 2], align_corners=False)


@MODELS.register("fcn", tasks=("segmentation",), description="FCN-8s: conv encoder, class scores fused from 3 levels")
class FCN(Segmenter):
    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        norm: str = "batch",
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        channels = tuple(int(c) for c in channels)
        if len(channels) < 3:
            raise ConfigError(f"fcn needs at least 3 levels to fuse, got channels {list(channels)}")
        levels, previous = [], in_channels
        for width in channels:
            levels.append(
                nn.Sequential(
                    ConvNormAct(previous, width, spatial_dims=spatial_dims, norm=norm),
                    ConvNormAct(width, width, spatial_dims=spatial_dims, norm=norm),
                    max_pool_type(spatial_dims)(2, ceil_mode=True),
                )
            )
            previous = width
        self.levels = nn.ModuleList(levels)
        conv = conv_type(spatial_dims)
        self.scores = nn.ModuleList(conv(width, num_classes, 1) for width in channels[-3:])  # coarse last
        self.feature_channels = num_classes
        self.head = nn.Identity()  # the fused scores are the logits
        self._record("fcn", channels=channels, norm=norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        maps = []
        out = x
        for level in self.levels:
            out = level(out)  # (B, C_l, *S / 2 ** (l + 1))
            maps.append(out)
        fine, middle, coarse = maps[-3:]
        score = self.scores[2](coarse)  # (B, K, *S / 2 ** L)
        score = _resize(score, middle.shape[2:]) + self.scores[1](middle)
        score = _resize(score, fine.shape[2:]) + self.scores[0](fine)
        return _resize(score, x.shape[2:])  # (B, K, *S)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


class ASPP(nn.Module):
    """Parallel 1x1, dilated 3x3 (one per rate) and image-pool branches, concatenated and projected."""

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int, rates: Sequence[int], norm: str):
        super().__init__()
        conv = conv_type(spatial_dims)

        def branch(kernel: int, dilation: int) -> nn.Module:
            return nn.Sequential(
                conv(
                    in_channels, out_channels, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False
                ),
                norm_layer(norm, spatial_dims, out_channels),
                nn.ReLU(),
            )

        self.branches = nn.ModuleList([branch(1, 1), *(branch(3, rate) for rate in rates)])
        self.pool = nn.Sequential(
            adaptive_avg_pool_type(spatial_dims)(1), conv(in_channels, out_channels, 1), nn.ReLU()
        )
        width = out_channels * (len(self.branches) + 1)
        self.project = ConvNormAct(width, out_channels, spatial_dims=spatial_dims, kernel_size=1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *g)
        pooled = self.pool(x).expand(-1, -1, *x.shape[2:])  # (B, out, *g): the whole image's context
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))  # (B, out, *g)


@MODELS.register(
    "deeplabv3plus", tasks=("segmentation",), description="DeepLabv3+: dilated residual encoder, ASPP and a decoder"
)
class DeepLabV3Plus(Segmenter):
    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        rates: Sequence[int] = (2, 4, 6),
        aspp_channels: int = 128,
        norm: str = "batch",
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        channels, rates = tuple(int(c) for c in channels), tuple(int(r) for r in rates)
        self.stem = ConvNormAct(in_channels, channels[0], spatial_dims=spatial_dims, norm=norm)
        stages, previous = [], channels[0]
        for index, width in enumerate(channels[1:]):
            last = index == len(channels) - 2  # dilated rather than strided: output stride stays 2 ** (L - 2)
            stages.append(
                nn.Sequential(
                    ResidualBlock(previous, width, spatial_dims=spatial_dims, stride=1 if last else 2, norm=norm),
                    ResidualBlock(width, width, spatial_dims=spatial_dims, norm=norm),
                )
            )
            previous = width
        self.stages = nn.ModuleList(stages)
        self.aspp = ASPP(previous, aspp_channels, spatial_dims=spatial_dims, rates=rates, norm=norm)
        low = max(8, channels[1] // 2)
        self.reduce = ConvNormAct(channels[1], low, spatial_dims=spatial_dims, kernel_size=1, norm=norm)
        self.decoder = nn.Sequential(
            ConvNormAct(aspp_channels + low, aspp_channels, spatial_dims=spatial_dims, norm=norm),
            ConvNormAct(aspp_channels, aspp_channels, spatial_dims=spatial_dims, norm=norm),
        )
        self.feature_channels = aspp_channels
        self.head = conv_type(spatial_dims)(aspp_channels, num_classes, 1)
        self._record("deeplabv3plus", channels=channels, rates=rates, aspp_channels=aspp_channels, norm=norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)  # (B, c0, *S)
        low = None
        for index, stage in enumerate(self.stages):
            out = stage(out)
            if index == 0:
                low = out  # (B, c1, *S / 2): the decoder's fine features
        context = _resize(self.aspp(out), low.shape[2:])  # (B, aspp, *S / 2)
        joined = self.decoder(torch.cat([context, self.reduce(low)], dim=1))  # (B, aspp, *S / 2)
        return _resize(joined, x.shape[2:])  # (B, aspp, *S)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, K, *S)
