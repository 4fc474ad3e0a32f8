"""Mobile networks for weak CPUs: MobileNet v1 (depthwise separable convolutions), MobileNet v2 (inverted
residuals with linear bottlenecks) and EfficientNet-B0 (inverted residuals with squeeze-and-excitation), 2D or
3D. Stems are stride 1 by default (`stem_stride: 2` is the papers'), so a 28x28 input ends on a 2x2 grid rather
than vanishing; `width` scales every layer and `attention` (se, eca, cbam) swaps the channel attention where a
block has one.
"""

from __future__ import annotations

import torch
from torch import nn

from medattn.layers import ConvNormAct
from medattn.models.base import Classifier, check_choice
from medattn.models.classic import DenseHead
from medattn.models.resnet import ATTENTIONS, attention_module
from medattn.registry import MODELS


def _scaled(channels: int, width: float) -> int:
    return max(8, int(round(channels * width / 8)) * 8)  # multiples of 8, as the papers round


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise k x k (carries the stride) -> attention -> 1x1 linear projection, + input when the
    shape is kept. `expand` 1 skips the first 1x1 (MobileNet v2's first block, EfficientNet's MBConv1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int,
        expand: int,
        stride: int,
        kernel_size: int,
        act: str,
        attention: str,
    ) -> None:
        super().__init__()
        inner = in_channels * expand
        options = {"spatial_dims": spatial_dims, "act": act}
        layers: list[nn.Module] = [] if expand == 1 else [ConvNormAct(in_channels, inner, kernel_size=1, **options)]
        layers.append(ConvNormAct(inner, inner, kernel_size=kernel_size, stride=stride, groups=inner, **options))
        layers.append(attention_module(attention, inner, spatial_dims=spatial_dims, reduction=4 * expand))
        layers.append(ConvNormAct(inner, out_channels, spatial_dims=spatial_dims, kernel_size=1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, *S)
        out = self.block(x)  # (B, C_out, *S / stride)
        return x + out if self.residual else out


class MobileNet(Classifier):
    """Stem -> blocks as `plan` lists them -> 1x1 conv to `last` channels -> head. Not registered itself."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        plan: list[tuple[int, int, int, int, int]],  # (expand, channels, repeats, stride, kernel) per stage
        stem: int,
        last: int,
        width: float,
        stem_stride: int,
        act: str,
        attention: str,
        dropout: float,
        separable: bool = False,  # MobileNet v1: depthwise then pointwise, no expansion, no residual
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        check_choice("attention", attention, ATTENTIONS)
        channels = _scaled(stem, width)
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, channels, spatial_dims=spatial_dims, stride=stem_stride, act=act)
        ]
        for expand, out, repeats, stride, kernel in plan:
            out = _scaled(out, width)
            for index in range(repeats):
                step = stride if index == 0 else 1
                if separable:
                    layers.append(self._separable(channels, out, spatial_dims, step, act, attention))
                else:
                    layers.append(
                        InvertedResidual(
                            channels,
                            out,
                            spatial_dims=spatial_dims,
                            expand=expand,
                            stride=step,
                            kernel_size=kernel,
                            act=act,
                            attention=attention,
                        )
                    )
                channels = out
        if last:
            layers.append(
                ConvNormAct(channels, _scaled(last, width), spatial_dims=spatial_dims, kernel_size=1, act=act)
            )
            channels = _scaled(last, width)
        self.features = nn.Sequential(*layers)
        self.feature_channels = channels
        self.head = DenseHead(channels, [], num_classes, dropout=dropout)

    @staticmethod
    def _separable(channels: int, out: int, spatial_dims: int, stride: int, act: str, attention: str) -> nn.Module:
        return nn.Sequential(
            ConvNormAct(channels, channels, spatial_dims=spatial_dims, stride=stride, groups=channels, act=act),
            attention_module(attention, channels, spatial_dims=spatial_dims, reduction=8),
            ConvNormAct(channels, out, spatial_dims=spatial_dims, kernel_size=1, act=act),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, *grid)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


PLANS = {  # name -> (plan, stem, last, activation, default attention, separable)
    "mobilenet_v1": (
        [(1, 64, 1, 1, 3), (1, 128, 2, 2, 3), (1, 256, 2, 2, 3), (1, 512, 6, 2, 3), (1, 1024, 2, 2, 3)],
        32,
        0,
        "relu",
        "none",
        True,
    ),
    "mobilenet_v2": (
        [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3), (6, 96, 3, 1, 3), (6, 160, 3, 2, 3)]
        + [(6, 320, 1, 1, 3)],
        32,
        1280,
        "relu6",
        "none",
        False,
    ),
    "efficientnet_b0": (
        [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5), (6, 192, 4, 2, 5)]
        + [(6, 320, 1, 1, 3)],
        32,
        1280,
        "silu",
        "se",
        False,
    ),
}


def _mobile(name: str):
    plan, stem, last, act, default_attention, separable = PLANS[name]

    def build(
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        width: float = 1.0,
        stem_stride: int = 1,
        attention: str = default_attention,
        dropout: float = 0.2,
    ) -> MobileNet:
        model = MobileNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            plan=plan,
            stem=stem,
            last=last,
            width=width,
            stem_stride=stem_stride,
            act=act,
            attention=attention,
            dropout=dropout,
            separable=separable,
        )
        model._record(name, width=width, stem_stride=stem_stride, attention=attention, dropout=dropout)
        return model

    return build


MODELS.register("mobilenet_v1", description="MobileNet v1: depthwise separable convolutions, 13 layers")(
    _mobile("mobilenet_v1")
)
MODELS.register("mobilenet_v2", description="MobileNet v2: inverted residuals with linear bottlenecks")(
    _mobile("mobilenet_v2")
)
MODELS.register("efficientnet_b0", description="EfficientNet-B0: inverted residuals with SE, SiLU, kernels 3 and 5")(
    _mobile("efficientnet_b0")
)
