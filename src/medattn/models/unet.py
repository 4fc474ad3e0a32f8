"""Segmentation networks: U-Net, Attention U-Net and TransUNet, one encoder-decoder written once for 2D and 3D.

All three share `UNet`: an encoder of conv levels (level 0 at full resolution, each later level halves
the grid with a stride-2 conv), an optional bottleneck module on the deepest map, and a decoder that
upsamples by transposed conv, concatenates the encoder's skip and convolves. They differ only in what
is plugged in:

- `unet`            plain skips (Ronneberger et al. 2015, with nnU-Net's conv-norm-LeakyReLU blocks);
- `attention_unet`  every skip weighted by an AttentionGate (Oktay et al. 2018) whose sigmoid `attend`
                    can be hooked: one map (B, 1, *skip_spatial) per skip;
- `trans_unet`      a transformer self-attending over the bottleneck tokens (Chen et al. 2021); its
                    softmaxes are `bottleneck.encoder.blocks.<i>.attention.attend`.

Any input size works: a stride-2 conv maps a side n to ceil(n / 2), the transposed conv maps it back to
n or n + 1, and the decoder crops the extra row to the skip's size, so nothing is padded or resampled.

Deep supervision (`deep_supervision=True`): `forward` still returns one tensor, the main logits. In
training mode it also stores auxiliary logits from the lower decoder levels in `model.aux_logits`
(a list, finest level first, each upsampled to the input size (B, num_classes, *spatial)) for the loss
to weight, e.g. by 1/2, 1/4, ... as nnU-Net does. In eval mode `aux_logits` is an empty list. Every
forward call replaces the list, so read it right after the call that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError
from medattn.layers import AttentionGate, ConvNormAct, GridPositionEmbedding, TransformerEncoder, conv_type
from medattn.models.base import ModelBase
from medattn.registry import MODELS

ACT = "leaky_relu"  # nnU-Net's choice; keeps gradients alive on the negative side at small batch sizes
_TRANSPOSED_CONV: dict[int, type[nn.Module]] = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_LINEAR_MODE = {2: "bilinear", 3: "trilinear"}


class Segmenter(ModelBase):
    """Base for segmentation models built by name through the registry.

    `forward(x)` maps (B, in_channels, *spatial) to logits (B, num_classes, *spatial) at input
    resolution; `forward_features` returns the decoder's last feature map (B, feature_channels, *spatial)
    and `forward_head` is the 1x1 conv to logits. Subclasses call `_record(name, **options)` so `config`
    can rebuild the model: `create_model(c["name"], spatial_dims=..., ..., options=c["options"])`.
    """

    def __init__(self, *, spatial_dims: int, in_channels: int, num_classes: int) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        self.aux_logits: list[torch.Tensor] = []  # deep supervision outputs of the last training forward


def crop_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Keep the first `size` elements of each spatial axis: (B, C, *larger) -> (B, C, *size)."""
    return x[(..., *(slice(0, s) for s in size))]


class ConvBlock(nn.Sequential):
    """Two 3x3 conv-norm-LeakyReLU; the first may stride by 2 (the encoder's downsampling). Dropout between."""

    def __init__(
        self, in_channels: int, out_channels: int, *, spatial_dims: int, stride: int, norm: str, dropout: float
    ) -> None:
        options = {"spatial_dims": spatial_dims, "norm": norm, "act": ACT}
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, stride=stride, **options)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = ConvNormAct(out_channels, out_channels, **options)


class UpBlock(nn.Module):
    """Transposed conv (x2) -> crop to the skip -> [attention gate on the skip] -> concat -> ConvBlock."""

    def __init__(
        self, in_channels: int, skip_channels: int, *, spatial_dims: int, norm: str, dropout: float, gate: bool
    ) -> None:
        super().__init__()
        self.up = _TRANSPOSED_CONV[spatial_dims](in_channels, skip_channels, 2, stride=2)
        self.gate = (
            AttentionGate(
                spatial_dims=spatial_dims,
                skip_channels=skip_channels,
                gating_channels=in_channels,
                inter_channels=max(skip_channels // 2, 1),
            )
            if gate
            else None
        )
        self.conv = ConvBlock(
            2 * skip_channels, skip_channels, spatial_dims=spatial_dims, stride=1, norm=norm, dropout=dropout
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # x (B, C_in, *S/2) coarse decoder map; skip (B, C_s, *S) from the encoder
        up = crop_to(self.up(x), skip.shape[2:])  # (B, C_s, *S); odd sides gave one extra row
        if self.gate is not None:
            skip = self.gate(skip, x)  # gated by the coarse map, as in Attention U-Net
        return self.conv(torch.cat([up, skip], dim=1))  # (B, C_s, *S)


class TransformerBottleneck(nn.Module):
    """1x1 conv to embed_dim -> tokens + grid position -> transformer encoder -> back on the grid -> 3x3 conv.

    Shape preserved: (B, C, *grid) -> (B, C, *grid). The positional embedding is stored for a
    `pos_grid`-sided grid and interpolated to any other, so every input size works.
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int,
        embed_dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        pos_grid: int,
        norm: str,
    ) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ConfigError(f"trans_unet embed_dim {embed_dim} must be divisible by heads {heads}")
        self.embed = conv_type(spatial_dims)(channels, embed_dim, 1)
        self.pos_embed = GridPositionEmbedding(embed_dim, spatial_dims=spatial_dims, grid=pos_grid)
        self.encoder = TransformerEncoder(embed_dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout)
        self.project = ConvNormAct(embed_dim, channels, spatial_dims=spatial_dims, norm=norm, act=ACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *grid)
        fmap = self.embed(x)  # (B, E, *grid)
        tokens = fmap.flatten(2).transpose(1, 2) + self.pos_embed(fmap.shape[2:])  # (B, N, E)
        tokens = self.encoder(tokens)  # (B, N, E)
        return self.project(tokens.transpose(1, 2).reshape(fmap.shape))  # (B, C, *grid)


class UNet(Segmenter):
    """Encoder levels `channels[0..L-1]`, optional `bottleneck` on the deepest map, decoder back to level 0.

    Not registered itself: `unet`, `attention_unet` and `trans_unet` build it and record their options.
    `gate=True` puts an AttentionGate on every skip. With `deep_supervision`, 1x1 heads on decoder
    levels 1..L-2 fill `aux_logits` in training mode (see the module docstring).
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int],
        norm: str = "instance",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        gate: bool = False,
        bottleneck: nn.Module | None = None,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        channels = tuple(channels)
        if len(channels) < 2 or min(channels) < 1:
            raise ConfigError(f"channels needs at least 2 positive widths (one per level), got {list(channels)}")
        if deep_supervision and len(channels) < 3:
            raise ConfigError(f"deep_supervision needs at least 3 levels in channels, got {list(channels)}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        block = {"spatial_dims": spatial_dims, "norm": norm, "dropout": dropout}
        self.encoder = nn.ModuleList(
            ConvBlock(c_in, c_out, stride=1 if level == 0 else 2, **block)
            for level, (c_in, c_out) in enumerate(zip((in_channels, *channels[:-1]), channels, strict=True))
        )
        self.bottleneck = bottleneck if bottleneck is not None else nn.Identity()
        # decoder[0] upsamples the deepest level; decoder[-1] ends at level 0, full resolution
        self.decoder = nn.ModuleList(
            UpBlock(channels[level], channels[level - 1], gate=gate, **block)
            for level in range(len(channels) - 1, 0, -1)
        )
        conv = conv_type(spatial_dims)
        self.head = conv(channels[0], num_classes, 1)
        self.deep_supervision = deep_supervision
        # aux_heads[j] reads decoder level j + 1 (finest first), i.e. the output of decoder[-2 - j]
        self.aux_heads = nn.ModuleList(
            conv(channels[level], num_classes, 1) for level in range(1, len(channels) - 1) if deep_supervision
        )
        self.feature_channels = channels[0]
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
                nn.init.kaiming_normal_(module.weight, a=0.01, nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder maps, finest first, the deepest through the bottleneck: [(B, channels[i], *S / 2**i)] for i in
        0..L-1 (sides rounded up). Other heads read the deepest (models/multitask.py)."""
        skips = []
        for level in self.encoder:
            x = level(x)  # (B, channels[i], *S / 2**i), sides rounded up
            skips.append(x)
        skips[-1] = self.bottleneck(skips[-1])  # (B, channels[L-1], *S / 2**(L-1))
        return skips

    def decode(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder outputs of `encode`'s maps, coarsest first: [(B, channels[L-2], *S/2**(L-2)), ...,
        (B, channels[0], *S)]."""
        x, outputs = skips[-1], []
        for up, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            x = up(x, skip)  # (B, channels[i], *S / 2**i)
            outputs.append(x)
        return outputs

    def _decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decode(self.encode(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._decode(x)[-1]  # (B, channels[0], *S)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, num_classes, *S)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self._decode(x)
        logits = self.forward_head(outputs[-1])  # (B, num_classes, *S)
        self.aux_logits = []
        if self.deep_supervision and self.training:
            size, mode = x.shape[2:], _LINEAR_MODE[self.spatial_dims]
            for head, fmap in zip(self.aux_heads, reversed(outputs[:-1]), strict=True):
                coarse = head(fmap)  # (B, num_classes, *S / 2**level)
                self.aux_logits.append(F.interpolate(coarse, size=size, mode=mode, align_corners=False))
        return logits


def _channels(channels: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(c) for c in channels)


@MODELS.register("unet", tasks=("segmentation",), description="U-Net: conv encoder-decoder with skip connections")
def unet(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    norm: str = "instance",
    dropout: float = 0.0,
    deep_supervision: bool = False,
) -> UNet:
    """U-Net with nnU-Net-style levels (two conv-norm-LeakyReLU, stride-2 conv down, transposed conv up)."""
    return _gated_or_plain(
        "unet",
        gate=False,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=channels,
        norm=norm,
        dropout=dropout,
        deep_supervision=deep_supervision,
    )


@MODELS.register(
    "attention_unet", tasks=("segmentation",), description="Attention U-Net: U-Net with an attention gate on every skip"
)
def attention_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    norm: str = "instance",
    dropout: float = 0.0,
    deep_supervision: bool = False,
) -> UNet:
    """U-Net whose skips are weighted by additive attention gates; hook `decoder.<i>.gate.attend` for the maps."""
    return _gated_or_plain(
        "attention_unet",
        gate=True,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=channels,
        norm=norm,
        dropout=dropout,
        deep_supervision=deep_supervision,
    )


def _gated_or_plain(
    name: str,
    *,
    gate: bool,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int],
    norm: str,
    dropout: float,
    deep_supervision: bool,
) -> UNet:
    channels = _channels(channels)
    model = UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=channels,
        norm=norm,
        dropout=dropout,
        deep_supervision=deep_supervision,
        gate=gate,
    )
    model._record(name, channels=channels, norm=norm, dropout=dropout, deep_supervision=deep_supervision)
    return model


@MODELS.register(
    "trans_unet", tasks=("segmentation",), description="TransUNet: CNN encoder, transformer bottleneck, CNN decoder"
)
def trans_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    embed_dim: int = 128,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: float = 4.0,
    pos_grid: int = 8,
    norm: str = "instance",
    dropout: float = 0.0,
    deep_supervision: bool = False,
) -> UNet:
    """U-Net whose deepest map is self-attended by a transformer; `pos_grid` is the stored position grid side."""
    channels = _channels(channels)
    if not channels:
        raise ConfigError("channels must not be empty")
    bottleneck = TransformerBottleneck(
        channels[-1],
        spatial_dims=spatial_dims,
        embed_dim=embed_dim,
        depth=depth,
        heads=heads,
        mlp_ratio=mlp_ratio,
        dropout=dropout,
        pos_grid=pos_grid,
        norm=norm,
    )
    model = UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=channels,
        norm=norm,
        dropout=dropout,
        deep_supervision=deep_supervision,
        bottleneck=bottleneck,
    )
    model._record(
        "trans_unet",
        channels=channels,
        embed_dim=embed_dim,
        depth=depth,
        heads=heads,
        mlp_ratio=mlp_ratio,
        pos_grid=pos_grid,
        norm=norm,
        dropout=dropout,
        deep_supervision=deep_supervision,
    )
    return model
