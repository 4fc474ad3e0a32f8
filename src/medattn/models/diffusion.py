"""A class-conditional denoising U-Net for DDPM image synthesis (Ho et al. 2020), written once for 2D and 3D.

The network predicts the velocity v (tasks/synthesis/diffusion.py) of a noisy image x_t given the step t and a
class. Step and class reach it
packed as two constant planes after the image channels, so the one engine (its loop, memory estimate, EMA and
DDP) sees an ordinary tensor:

    input (B, C + 2, *S): channels 0..C-1 the noisy image, channel C the step t (0..T-1), channel C+1 the class
    index + 1, where 0 is "no class" (classifier-free guidance trains the unconditional model with it).

`in_channels` is C, the image's channels, and the output is the predicted velocity (B, C, *S). An input of C
channels alone is denoised as at step 0 without a class, so any tool that feeds a model a plain image of
`in_channels` channels (memory estimates, `medattn models`) can run it. `num_classes` is the number of classes
conditioned on.

Blocks: residual conv blocks with GroupNorm and SiLU, the step and class embedding added after the first conv
(Nichol & Dhariwal 2021); a stride-2 conv down, nearest-neighbour up to the skip's size (any input size works);
multi-head self-attention over the tokens of the coarsest level, its softmax the named submodule
`middle.attention.attend.attend`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medattn.layers import MultiHeadAttention, conv_type, norm_layer
from medattn.models.base import ModelBase, check_lengths
from medattn.registry import MODELS

CONDITION_PLANES = 2  # step and class, after the image channels


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the step (B,) -> (B, dim), as the Transformer's positions."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * frequencies[None]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """norm -> SiLU -> conv, + embedding, norm -> SiLU -> dropout -> conv, plus a (1x1) skip."""

    def __init__(self, channels_in: int, channels_out: int, *, emb_dim: int, spatial_dims: int, dropout: float):
        super().__init__()
        conv = conv_type(spatial_dims)
        self.norm1 = norm_layer("group", spatial_dims, channels_in)
        self.conv1 = conv(channels_in, channels_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, channels_out)
        self.norm2 = norm_layer("group", spatial_dims, channels_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(channels_out, channels_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: deep U-Nets train from step one
        self.skip = conv(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # x (B, Cin, *S), emb (B, E)
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb).reshape(*emb.shape[:1], -1, *[1] * (x.ndim - 2))  # (B, Cout, 1, ...)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SpatialSelfAttention(nn.Module):
    """Self-attention over the (*S) positions of a feature map, pre-normed, added back."""

    def __init__(self, channels: int, *, spatial_dims: int, heads: int) -> None:
        super().__init__()
        self.norm = norm_layer("group", spatial_dims, channels)
        self.attend = MultiHeadAttention(channels, heads=heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S)
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C)
        return x + self.attend(tokens).transpose(1, 2).reshape(x.shape)


class Middle(nn.Module):
    def __init__(self, channels: int, *, emb_dim: int, spatial_dims: int, dropout: float, heads: int) -> None:
        super().__init__()
        options = {"emb_dim": emb_dim, "spatial_dims": spatial_dims, "dropout": dropout}
        self.block1 = ResBlock(channels, channels, **options)
        self.attention = SpatialSelfAttention(channels, spatial_dims=spatial_dims, heads=heads)
        self.block2 = ResBlock(channels, channels, **options)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.block2(self.attention(self.block1(x, emb)), emb)


class DenoisingUNet(ModelBase):
    """Velocity prediction v(x_t, t, class): levels of `widths`, `depth` residual blocks each."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        widths: tuple[int, ...] = (16, 32, 64),
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        check_lengths(widths=widths)
        conv = conv_type(spatial_dims)
        base, emb_dim = widths[0], 4 * widths[0]
        options = {"emb_dim": emb_dim, "spatial_dims": spatial_dims, "dropout": dropout}
        self.step_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embedding = nn.Embedding(num_classes + 1, emb_dim)  # row 0: no class
        self.stem = conv(in_channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, channels = [base], base
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(depth):
                blocks.append(ResBlock(channels, width, **options))
                channels = width
                skips.append(channels)
            self.down.append(blocks)
            last = level == len(widths) - 1
            self.downsample.append(nn.Identity() if last else conv(channels, channels, 3, stride=2, padding=1))
            if not last:
                skips.append(channels)
        self.middle = Middle(channels, heads=heads, **options)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for _ in range(depth + 1):  # one more block than down: it takes the skip from the downsampling
                blocks.append(ResBlock(channels + skips.pop(), width, **options))
                channels = width
            self.up.append(blocks)
            self.upsample.append(conv(channels, channels, 3, padding=1) if level > 0 else nn.Identity())
        self.out_norm = norm_layer("group", spatial_dims, channels)
        self.out = conv(channels, in_channels, 3, padding=1)
        self.feature_channels = channels
        self._record("ddpm_unet", widths=tuple(widths), depth=depth, heads=heads, dropout=dropout)

    def split_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy image (B, C, *S), step (B,) int64, class index + 1 (B,) int64) from the packed input."""
        image = x[:, : self.in_channels]
        if x.shape[1] == self.in_channels:
            zeros = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            return image, zeros, zeros
        if x.shape[1] != self.in_channels + CONDITION_PLANES:
            raise ValueError(
                f"ddpm_unet with {self.in_channels} image channels takes {self.in_channels} or "
                f"{self.in_channels + CONDITION_PLANES} channels (image, step, class); got {x.shape[1]}"
            )
        first = (slice(None), slice(self.in_channels, None), *[0] * (x.ndim - 2))
        step, label = x[first].round().long().unbind(dim=1)  # (B,) each, read from the first voxel
        return image, step, label.clamp(0, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        image, step, label = self.split_input(x)
        emb = self.step_mlp(step_embedding(step, self.stem.out_channels)) + self.class_embedding(label)  # (B, E)
        h = self.stem(image)  # (B, w0, *S)
        skips = [h]
        for blocks, downsample in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            if not isinstance(downsample, nn.Identity):
                h = downsample(h)  # (B, w, *ceil(S / 2))
                skips.append(h)
        h = self.middle(h, emb)
        for blocks, upsample in zip(self.up, self.upsample, strict=True):
            for block in blocks:
                skip = skips.pop()
                h = block(torch.cat([h, skip], dim=1), emb)
            if not isinstance(upsample, nn.Identity):
                h = upsample(F.interpolate(h, size=skips[-1].shape[2:], mode="nearest"))  # to the finer skip's size
        return F.silu(self.out_norm(h))  # (B, w0, *S)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(features)  # (B, C, *S) predicted velocity


@MODELS.register(
    "ddpm_unet", tasks=("synthesis",), description="class-conditional denoising U-Net (DDPM) with self-attention"
)
def ddpm_unet(*, spatial_dims: int, in_channels: int, num_classes: int, **options) -> DenoisingUNet:
    return DenoisingUNet(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, **options)
