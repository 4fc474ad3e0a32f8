"""Residual networks: the MedMNIST ResNet-18 baseline and a small ResNet with attention in every block."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medattn.layers import (
    CBAM,
    ClassifierHead,
    ConvNormAct,
    EfficientChannelAttention,
    SqueezeExcitation,
    conv_type,
    max_pool_type,
    norm_layer,
)
from medattn.models.base import Classifier, check_choice, check_lengths
from medattn.registry import MODELS

ATTENTIONS = ("se", "eca", "cbam", "none")


def attention_module(kind: str, channels: int, *, spatial_dims: int, reduction: int) -> nn.Module:
    """The attention applied at the end of a residual branch, by name."""
    check_choice("attention", kind, ATTENTIONS)
    if kind == "se":
        return SqueezeExcitation(channels, spatial_dims=spatial_dims, reduction=reduction)
    if kind == "eca":
        return EfficientChannelAttention(channels, spatial_dims=spatial_dims)
    if kind == "cbam":
        return CBAM(channels, spatial_dims=spatial_dims, reduction=reduction)
    return nn.Identity()


class ResidualBlock(nn.Module):
    """conv-norm-act -> conv-norm -> attention, + shortcut (1x1 conv + norm if the shape changes) -> act."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int,
        stride: int = 1,
        kernel_size: int = 3,
        norm: str = "batch",
        attention: str = "none",
        reduction: int = 16,
    ) -> None:
        super().__init__()
        options = {"spatial_dims": spatial_dims, "kernel_size": kernel_size, "norm": norm}
        self.conv1 = ConvNormAct(in_channels, out_channels, stride=stride, **options)
        self.conv2 = ConvNormAct(out_channels, out_channels, act=None, **options)
        self.attention = attention_module(attention, out_channels, spatial_dims=spatial_dims, reduction=reduction)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv_type(spatial_dims)(in_channels, out_channels, 1, stride=stride, bias=False),
                norm_layer(norm, spatial_dims, out_channels),
            )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, *S)
        branch = self.attention(self.conv2(self.conv1(x)))  # (B, C_out, *S / stride)
        return self.act(branch + self.shortcut(x))


class BottleneckBlock(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand to 4x -> attention, + shortcut -> act (ResNet-50)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int,
        stride: int = 1,
        kernel_size: int = 3,
        norm: str = "batch",
        attention: str = "none",
        reduction: int = 16,
    ) -> None:
        super().__init__()
        inner = out_channels // self.expansion
        self.reduce = ConvNormAct(in_channels, inner, spatial_dims=spatial_dims, kernel_size=1, norm=norm)
        self.conv = ConvNormAct(
            inner, inner, spatial_dims=spatial_dims, kernel_size=kernel_size, stride=stride, norm=norm
        )
        self.expand = ConvNormAct(inner, out_channels, spatial_dims=spatial_dims, kernel_size=1, norm=norm, act=None)
        self.attention = attention_module(attention, out_channels, spatial_dims=spatial_dims, reduction=reduction)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv_type(spatial_dims)(in_channels, out_channels, 1, stride=stride, bias=False),
                norm_layer(norm, spatial_dims, out_channels),
            )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, *S)
        branch = self.attention(self.expand(self.conv(self.reduce(x))))  # (B, C_out, *S / stride)
        return self.act(branch + self.shortcut(x))


BLOCKS = {"basic": ResidualBlock, "bottleneck": BottleneckBlock}


def residual_stages(
    in_channels: int,
    widths: Sequence[int],
    depths: Sequence[int],
    *,
    spatial_dims: int,
    first_stride: int,
    kernel_size: int = 3,
    norm: str,
    attention: str,
    reduction: int,
    block: str = "basic",
) -> list[nn.Sequential]:
    """One stage of residual blocks (`block`: basic or bottleneck) per width; each stage's first block halves the
    grid (the first stage's strides by `first_stride`)."""
    unit = BLOCKS[check_choice("block", block, tuple(BLOCKS))]
    stages, channels = [], in_channels
    for index, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        blocks = [
            unit(
                channels if index_in_stage == 0 else width,
                width,
                spatial_dims=spatial_dims,
                stride=(2 if index > 0 else first_stride) if index_in_stage == 0 else 1,
                kernel_size=kernel_size,
                norm=norm,
                attention=attention,
                reduction=reduction,
            )
            for index_in_stage in range(depth)
        ]
        stages.append(nn.Sequential(*blocks))
        channels = width
    return stages


class ResNet(Classifier):
    """Stem -> stages of residual blocks (stage 0 at stride 1, later stages halve the grid) -> head.

    Not registered itself: `resnet18` and `attn_resnet` build it and record their own options.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        depths: Sequence[int],
        stem_kernel: int = 3,
        stem_stride: int = 1,
        stem_pool: bool = False,
        kernel_size: int = 3,
        attention: str = "none",
        reduction: int = 16,
        norm: str = "batch",
        dropout: float = 0.0,
        block: str = "basic",
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        check_lengths(widths=widths, depths=depths)
        check_choice("block", block, tuple(BLOCKS))
        check_choice("attention", attention, ATTENTIONS)
        stem_width = widths[0] // 4 if block == "bottleneck" else widths[0]  # ResNet-50: 64 in, 256 out
        stem: list[nn.Module] = [
            ConvNormAct(
                in_channels,
                stem_width,
                spatial_dims=spatial_dims,
                kernel_size=stem_kernel,
                stride=stem_stride,
                norm=norm,
            )
        ]
        if stem_pool:
            stem.append(max_pool_type(spatial_dims)(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        stages = residual_stages(
            stem_width,
            widths,
            depths,
            spatial_dims=spatial_dims,
            first_stride=1,
            kernel_size=kernel_size,
            norm=norm,
            attention=attention,
            reduction=reduction,
            block=block,
        )
        channels = widths[-1]
        self.stages = nn.Sequential(*stages)
        self.feature_channels = channels
        self.head = ClassifierHead(channels, num_classes, spatial_dims=spatial_dims, dropout=dropout)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, widths[-1], *grid)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, num_classes)


STEMS = {  # name -> (kernel, stride, max-pool)
    "small": (3, 1, False),  # MedMNIST "ResNet-18 (28)": keeps 28 x 28 inputs at full resolution
    "imagenet": (7, 2, True),  # the original ResNet stem, for larger inputs
}


DEEP = {  # name -> (block, depths, widths at width 1.0, attention)
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512), "none"),
    "resnet34": ("basic", (3, 4, 6, 3), (64, 128, 256, 512), "none"),
    "resnet50": ("bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048), "none"),
    "se_resnet50": ("bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048), "se"),
}


def _deep(name: str):
    block, depths, widths, attention = DEEP[name]

    def build(
        *, spatial_dims: int, in_channels: int, num_classes: int, stem: str = "small", width: float = 1.0
    ) -> ResNet:
        """Stem "small" (3x3 stride 1, no max-pool: keeps 28 x 28 inputs) or "imagenet" (7x7 stride 2 + max-pool);
        `width` scales every stage (1.0 = the paper's)."""
        kernel, stride, pool = STEMS[check_choice("stem", stem, tuple(STEMS))]
        model = ResNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            widths=tuple(max(8, round(w * width / 4) * 4) for w in widths),
            depths=depths,
            stem_kernel=kernel,
            stem_stride=stride,
            stem_pool=pool,
            attention=attention,
            block=block,
        )
        model._record(name, stem=stem, width=width)
        return model

    return build


MODELS.register("resnet18", description="ResNet-18 (BasicBlock [2,2,2,2], 64-512): the MedMNIST baseline")(
    _deep("resnet18")
)
MODELS.register("resnet34", description="ResNet-34 (BasicBlock [3,4,6,3], 64-512)")(_deep("resnet34"))
MODELS.register("resnet50", description="ResNet-50 (Bottleneck [3,4,6,3], 256-2048)")(_deep("resnet50"))
MODELS.register("se_resnet50", description="SE-ResNet-50: ResNet-50 with squeeze-and-excitation in every block")(
    _deep("se_resnet50")
)


@MODELS.register("attn_resnet", description="small residual CNN with SE/ECA/CBAM attention in every block")
def attn_resnet(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    widths: Sequence[int] = (32, 64, 128),
    depths: Sequence[int] = (1, 1, 1),
    stem_stride: int = 1,
    kernel_size: int = 3,
    attention: str = "se",
    reduction: int = 8,
    dropout: float = 0.0,
    norm: str = "batch",
) -> ResNet:
    """Residual CNN, fast on CPU, with attention ("se", "eca", "cbam" or "none") ending every block."""
    widths, depths = tuple(widths), tuple(depths)
    model = ResNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        widths=widths,
        depths=depths,
        stem_kernel=kernel_size,
        stem_stride=stem_stride,
        kernel_size=kernel_size,
        attention=attention,
        reduction=reduction,
        norm=norm,
        dropout=dropout,
    )
    options = {"widths": widths, "depths": depths, "stem_stride": stem_stride, "kernel_size": kernel_size}
    model._record("attn_resnet", **options, attention=attention, reduction=reduction, dropout=dropout, norm=norm)
    return model
