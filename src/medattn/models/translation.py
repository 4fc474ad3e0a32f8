"""Image-to-image generators: an Attention U-Net with a self-attending bottleneck, mapping source channels to
target channels on the same grid, 2D and 3D.

Both registered names build the same network (models/unet.py's `UNet`: attention gates on every skip, instance
norm, and `TransformerBottleneck` self-attending over the deepest map); they differ in how the translation task
trains them:
- `pix2pix`  against a conditional PatchGAN discriminator (models/patchgan.py) plus L1 (Isola et al. 2017); the
             discriminator is training state only: model.safetensors holds the generator;
- `unet_l1`  on L1 alone: the baseline every adversarial result should be shown beside.
The output is linear (no tanh): targets are standardised with the training set's mean and standard deviation.
`discriminator_width` and `discriminator_layers` size pix2pix's discriminator; they are recorded in the options so
a resumed run rebuilds the same one.
"""

from __future__ import annotations

from collections.abc import Sequence

from medattn.models.unet import TransformerBottleneck, UNet
from medattn.registry import MODELS

ADVERSARIAL = frozenset({"pix2pix"})  # generators trained against a discriminator by default


def _generator(
    name: str,
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int],
    embed_dim: int,
    heads: int,
    depth: int,
    dropout: float,
    extra: dict,
) -> UNet:
    channels = tuple(int(c) for c in channels)
    bottleneck = TransformerBottleneck(
        channels[-1],
        spatial_dims=spatial_dims,
        embed_dim=embed_dim,
        depth=depth,
        heads=heads,
        mlp_ratio=2.0,
        dropout=dropout,
        pos_grid=8,
        norm="instance",
    )
    model = UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=channels,
        norm="instance",
        dropout=dropout,
        gate=True,
        bottleneck=bottleneck,
    )
    model._record(name, channels=channels, embed_dim=embed_dim, heads=heads, depth=depth, dropout=dropout, **extra)
    return model


@MODELS.register(
    "pix2pix",
    tasks=("translation",),
    description="pix2pix: attention U-Net generator with a self-attending bottleneck, against a PatchGAN",
)
def pix2pix(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    embed_dim: int = 64,
    heads: int = 4,
    depth: int = 1,
    dropout: float = 0.0,
    discriminator_width: int = 32,
    discriminator_layers: int = 3,
) -> UNet:
    """The generator; `discriminator_*` size the PatchGAN its loss trains (3 layers: 70x70 receptive field)."""
    extra = {"discriminator_width": int(discriminator_width), "discriminator_layers": int(discriminator_layers)}
    return _generator(
        "pix2pix",
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=channels,
        embed_dim=embed_dim,
        heads=heads,
        depth=depth,
        dropout=dropout,
        extra=extra,
    )


@MODELS.register(
    "unet_l1", tasks=("translation",), description="the pix2pix generator trained on L1 alone (the baseline)"
)
def unet_l1(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    embed_dim: int = 64,
    heads: int = 4,
    depth: int = 1,
    dropout: float = 0.0,
) -> UNet:
    """Attention U-Net with a self-attending bottleneck, regressing the target intensities."""
    return _generator(
        "unet_l1",
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=channels,
        embed_dim=embed_dim,
        heads=heads,
        depth=depth,
        dropout=dropout,
        extra={},
    )
