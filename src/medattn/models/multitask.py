"""One shared encoder, several heads: the U-Net family's encoder with its decoder for a segmentation head, and a
small MLP on the globally pooled deepest features for each per-image head (a class, a value), 2D and 3D.

`forward(x)` returns a dict keyed by head name: the segmentation head (named "segmentation") gives logits
(B, K, *S) on the input's grid, every other head (B, outputs). The encoder and decoder are `models/unet.py`'s
`UNet` (attention gates on the skips by default, `gate=False` for a plain U-Net), so the segmentation branch is the
segmentation task's network. With `uncertainty=True` the model also holds one learned log-variance per head
(`log_variances`, in the order of `heads`) for homoscedastic uncertainty weighting of the heads' losses (Kendall
et al. 2018, tasks/multitask/loss.py): kept with the weights, so they are checkpointed, averaged by EMA and saved.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.models.base import ModelBase
from medattn.models.unet import UNet
from medattn.registry import MODELS

SEGMENTATION = "segmentation"  # the head read from the decoder; every other head reads the pooled encoder


class VectorHead(nn.Sequential):
    """Pooled deepest features (B, C) -> Linear -> GELU -> Dropout -> Linear -> (B, outputs)."""

    def __init__(self, channels: int, outputs: int, *, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(channels, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))


class MultiTaskUNet(ModelBase):
    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        heads: dict[str, int],
        channels: Sequence[int],
        norm: str,
        dropout: float,
        gate: bool,
        hidden: int,
        uncertainty: bool,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        if not heads or any(int(n) < 1 for n in heads.values()):
            raise ConfigError(f"heads must map each head's name to its outputs (>= 1), got {heads!r}")
        self.head_names = list(heads)
        segmentation = heads.get(SEGMENTATION)
        self.unet = UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=int(segmentation or 1),
            channels=channels,
            norm=norm,
            dropout=dropout,
            gate=gate,
        )
        self.segments = segmentation is not None
        if not self.segments:  # no decoder to train: drop it, so no parameter goes without a gradient
            self.unet.decoder, self.unet.head = nn.ModuleList(), nn.Identity()
        self.vector_names = [name for name in heads if name != SEGMENTATION]
        deepest = int(channels[-1])
        self.vector_heads = nn.ModuleList(
            VectorHead(deepest, int(heads[name]), hidden=hidden, dropout=dropout) for name in self.vector_names
        )
        self.log_variances = nn.Parameter(torch.zeros(len(heads))) if uncertainty else None
        self.feature_channels = deepest

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.unet.encode(x)  # [(B, channels[i], *S / 2**i)], the deepest last

    def forward_head(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = {}
        if self.segments:
            outputs[SEGMENTATION] = self.unet.forward_head(self.unet.decode(features)[-1])  # (B, K, *S)
        pooled = features[-1].flatten(2).mean(dim=2)  # (B, C): global average over the deepest grid
        for name, head in zip(self.vector_names, self.vector_heads, strict=True):
            outputs[name] = head(pooled)  # (B, outputs)
        return {name: outputs[name] for name in self.head_names}  # in the heads' order


@MODELS.register(
    "multitask_unet",
    tasks=("multitask",),
    description="shared (attention) U-Net encoder: a segmentation decoder and pooled MLP heads per image",
)
def multitask_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    heads: dict[str, int] | None = None,
    channels: Sequence[int] = (16, 32, 64, 128),
    norm: str = "instance",
    dropout: float = 0.0,
    gate: bool = True,
    hidden: int = 64,
    uncertainty: bool = False,
) -> MultiTaskUNet:
    """`heads` maps head names to outputs; None: a segmentation head and one per-image head, each of num_classes."""
    heads = {str(k): int(v) for k, v in (heads or {SEGMENTATION: num_classes, "label": num_classes}).items()}
    channels = tuple(int(c) for c in channels)
    if len(channels) < 2:
        raise ConfigError(f"channels needs at least 2 positive widths (one per level), got {list(channels)}")
    model = MultiTaskUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        heads=heads,
        channels=channels,
        norm=norm,
        dropout=dropout,
        gate=gate,
        hidden=hidden,
        uncertainty=uncertainty,
    )
    options = {"heads": heads, "channels": channels, "norm": norm, "dropout": dropout, "gate": gate}
    model._record("multitask_unet", **options, hidden=hidden, uncertainty=uncertainty)
    return model
