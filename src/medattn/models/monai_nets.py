"""Networks MONAI maintains, behind the registry with the project's model surface (forward_features,
forward_head, config): DenseNet-121 and a Swin transformer classifier; SegResNet, UNETR and SwinUNETR
segmenters. MONAI loads when one is built (about 6 s), never at import.

Small medical inputs need two adaptations, both said in the options: DenseNet's 7x7 stride-2 stem and max-pool
become a 3x3 stride-1 conv (`stem: small`), so a 28x28 image is not 7x7 before the first block; and networks
that need a size multiple (SegResNet 8, SwinUNETR 32) or a fixed size (UNETR) get their input padded (and the
logits cropped back) or resampled to `img_size` (and back).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.layers import ClassifierHead, conv_type
from medattn.models.base import Classifier, check_choice
from medattn.models.unet import Segmenter
from medattn.registry import MODELS

_MODE = {2: "bilinear", 3: "trilinear"}


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 1) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(x zero-padded at the end of each spatial axis to a multiple of `multiple`, at least `minimum`, and the
    original spatial size)."""
    size = tuple(x.shape[2:])
    extra = [max(minimum, s + (-s) % multiple) - s for s in size]
    padding = [p for amount in reversed(extra) for p in (0, amount)]  # F.pad wants the last axis first
    return (F.pad(x, padding) if any(extra) else x), size


def crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return x[(..., *(slice(0, s) for s in size))]


@MODELS.register("densenet121", source="MONAI", description="DenseNet-121 (MONAI), with a small-input stem by default")
class DenseNet121(Classifier):
    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        init_features: int = 64,
        growth_rate: int = 32,
        stem: str = "small",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        from monai.networks.nets import DenseNet121 as Monai

        check_choice("stem", stem, ("small", "imagenet"))
        net = Monai(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=num_classes,
            init_features=init_features,
            growth_rate=growth_rate,
        )
        if stem == "small":
            net.features.conv0 = conv_type(spatial_dims)(in_channels, init_features, 3, padding=1, bias=False)
            net.features.pool0 = nn.Identity()
        self.features = net.features
        self.feature_channels = net.class_layers.out.in_features
        self.head = ClassifierHead(self.feature_channels, num_classes, spatial_dims=spatial_dims, dropout=dropout)
        self._record("densenet121", init_features=init_features, growth_rate=growth_rate, stem=stem, dropout=dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))  # (B, C, *grid): the blocks end on a norm, the ReLU follows

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@MODELS.register(
    "swin", source="MONAI", description="Swin transformer (MONAI's backbone): shifted-window attention, 4 stages"
)
class SwinClassifier(Classifier):
    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        embed_dim: int = 24,
        depths: Sequence[int] = (2, 2, 2, 2),
        heads: Sequence[int] = (3, 6, 12, 24),
        window: int = 7,
        patch: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        from monai.networks.nets.swin_unetr import SwinTransformer

        depths, heads = tuple(int(d) for d in depths), tuple(int(h) for h in heads)
        self.backbone = SwinTransformer(
            in_chans=in_channels,
            embed_dim=embed_dim,
            window_size=(window,) * spatial_dims,
            patch_size=(patch,) * spatial_dims,
            depths=depths,
            num_heads=heads,
            spatial_dims=spatial_dims,
        )
        self.multiple = patch * 2 ** len(depths)  # each stage merges 2 x 2 (x 2) patches
        self.feature_channels = embed_dim * 2 ** len(depths)
        self.head = ClassifierHead(self.feature_channels, num_classes, spatial_dims=spatial_dims, dropout=dropout)
        options = {"embed_dim": embed_dim, "depths": depths, "heads": heads, "window": window, "patch": patch}
        self._record("swin", **options, dropout=dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        padded, _ = pad_to_multiple(x, self.multiple)
        return self.backbone(padded, normalize=True)[-1]  # (B, C, *grid): the last stage's map

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


class WrappedSegmenter(Segmenter):
    """A MONAI segmenter as `net`; its input padded to `multiple` or resampled to `img_size`, logits brought
    back to the input's grid. forward_features is the input as the network sees it; the network is the head."""

    def __init__(self, *, spatial_dims: int, in_channels: int, num_classes: int) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        self.multiple, self.minimum, self.img_size = 1, 1, None
        self.feature_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S)
        size = tuple(x.shape[2:])
        if self.img_size is not None and size != self.img_size:
            logits = self.net(F.interpolate(x, size=self.img_size, mode=_MODE[x.ndim - 2], align_corners=False))
            return F.interpolate(logits, size=size, mode=_MODE[x.ndim - 2], align_corners=False)
        padded, size = pad_to_multiple(x, self.multiple, self.minimum)
        return crop(self.net(padded), size)  # (B, K, *S)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward(features)


@MODELS.register(
    "segresnet",
    source="MONAI",
    tasks=("segmentation",),
    description="SegResNet (MONAI): residual encoder, light decoder",
)
class SegResNet(WrappedSegmenter):
    def __init__(
        self, *, spatial_dims: int, in_channels: int, num_classes: int, init_filters: int = 16, dropout: float = 0.0
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        from monai.networks.nets import SegResNet as Monai

        self.net = Monai(
            spatial_dims=spatial_dims,
            init_filters=init_filters,
            in_channels=in_channels,
            out_channels=num_classes,
            dropout_prob=dropout or None,
        )
        self.multiple = 8  # three stride-2 levels
        self._record("segresnet", init_filters=init_filters, dropout=dropout)


@MODELS.register(
    "unetr", source="MONAI", tasks=("segmentation",), description="UNETR (MONAI): ViT encoder, conv decoder; fixed size"
)
class UNETR(WrappedSegmenter):
    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        img_size: int | Sequence[int] = 32,
        feature_size: int = 16,
        hidden_size: int = 192,
        mlp_dim: int = 768,
        heads: int = 6,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        from monai.networks.nets import UNETR as Monai  # noqa: N811

        sizes = (img_size,) * spatial_dims if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        self.net = Monai(
            in_channels=in_channels,
            out_channels=num_classes,
            img_size=sizes,
            feature_size=feature_size,
            hidden_size=hidden_size,
            mlp_dim=mlp_dim,
            num_heads=heads,
            spatial_dims=spatial_dims,
        )
        self.img_size = sizes  # inputs of another size are resampled to it: set it to the training patch
        options = {"img_size": list(sizes), "feature_size": feature_size, "hidden_size": hidden_size}
        self._record("unetr", **options, mlp_dim=mlp_dim, heads=heads)


@MODELS.register(
    "swin_unetr", source="MONAI", tasks=("segmentation",), description="SwinUNETR (MONAI): Swin encoder, U-Net decoder"
)
class SwinUNETR(WrappedSegmenter):
    """The bottleneck is the input / 32: batch norm (default) works on a one-voxel bottleneck, so inputs are padded
    to 32 an axis; instance norm needs more than one voxel there, so with `norm: instance` to 64."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        feature_size: int = 12,
        window: int = 7,
        norm: str = "batch",
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        from monai.networks.nets import SwinUNETR as Monai

        check_choice("norm", norm, ("batch", "instance"))
        self.net = Monai(
            in_channels=in_channels,
            out_channels=num_classes,
            feature_size=feature_size,
            window_size=window,
            norm_name=norm,
            spatial_dims=spatial_dims,
        )
        self.multiple = 32  # patch 2, four merges
        self.minimum = 32 if norm == "batch" else 64
        self._record("swin_unetr", feature_size=feature_size, window=window, norm=norm)
