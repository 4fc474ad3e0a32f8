"""The PatchGAN discriminator of pix2pix (Isola et al. 2017), 2D and 3D: a score per overlapping patch.

`layers` stride-2 4x4 convolutions (widths width, 2 width, ... capped at 8 width), one stride-1 conv, then a
one-channel map; with 3 layers each output sees a 70x70 patch of its input. Instance norm (none on the first
layer) and LeakyReLU 0.2, as in the paper. It is conditional: its input is the source and a target (real or
generated) concatenated on the channels. Not registered: it is training state of the translation loss, never a
model a run exports.
"""

from __future__ import annotations

import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.layers import conv_type
from medattn.layers.factories import norm_layer


class PatchDiscriminator(nn.Module):
    def __init__(self, *, spatial_dims: int, in_channels: int, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        if width < 1 or layers < 1:
            raise ConfigError(f"discriminator width and layers must be positive, got {width} and {layers}")
        conv = conv_type(spatial_dims)
        blocks: list[nn.Module] = [conv(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = width
        for level in range(1, layers + 1):
            out = width * min(2**level, 8)
            stride = 2 if level < layers else 1
            blocks += [
                conv(channels, out, 4, stride=stride, padding=1, bias=False),
                norm_layer("instance", spatial_dims, out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        blocks.append(conv(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                nn.init.normal_(module.weight, 0.0, 0.02)  # pix2pix's initialisation
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # source (B, Cs, *S), target (B, Ct, *S) -> scores (B, 1, *patches)
        return self.net(torch.cat([source, target], dim=1))
