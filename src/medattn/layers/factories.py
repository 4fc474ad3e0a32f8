"""Small lookups keyed by `spatial_dims`, so every block is written once for 2D and 3D.

`conv_type(3)` is `nn.Conv3d`; `norm_layer("batch", 2, 16)` is `nn.BatchNorm2d(16)`. Unknown names
raise ConfigError listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from medattn.errors import ConfigError

_CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_AVG_POOL: dict[int, type[nn.Module]] = {2: nn.AvgPool2d, 3: nn.AvgPool3d}
_MAX_POOL: dict[int, type[nn.Module]] = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_ADAPTIVE_AVG_POOL: dict[int, type[nn.Module]] = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_ADAPTIVE_MAX_POOL: dict[int, type[nn.Module]] = {2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}
_BATCH_NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM: dict[int, type[nn.Module]] = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}

NORMS = ("batch", "instance", "group", "layer")
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    # not in place: full backward hooks (Grad-CAM) fail on tensors modified in place
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "relu6": nn.ReLU6,
}


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv_type(spatial_dims: int) -> type[nn.Module]:
    """`nn.Conv2d` or `nn.Conv3d`."""
    return _CONV[_check_dims(spatial_dims)]


def pool_type(kind: str, spatial_dims: int) -> type[nn.Module]:
    """Pooling class by kind: "avg", "max", "adaptive_avg" or "adaptive_max"."""
    table = {
        "avg": _AVG_POOL,
        "max": _MAX_POOL,
        "adaptive_avg": _ADAPTIVE_AVG_POOL,
        "adaptive_max": _ADAPTIVE_MAX_POOL,
    }
    if kind not in table:
        raise ConfigError(f"unknown pool {kind!r}; valid: {', '.join(table)}")
    return table[kind][_check_dims(spatial_dims)]


def avg_pool_type(spatial_dims: int) -> type[nn.Module]:
    return pool_type("avg", spatial_dims)


def max_pool_type(spatial_dims: int) -> type[nn.Module]:
    return pool_type("max", spatial_dims)


def adaptive_avg_pool_type(spatial_dims: int) -> type[nn.Module]:
    return pool_type("adaptive_avg", spatial_dims)


def adaptive_max_pool_type(spatial_dims: int) -> type[nn.Module]:
    return pool_type("adaptive_max", spatial_dims)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, *spatial) map, as in ConvNeXt."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x):  # (B, C, *spatial)
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def norm_layer(name: str, spatial_dims: int, channels: int, *, groups: int = 8) -> nn.Module:
    """Normalisation over a (B, C, *spatial) map: "batch", "instance", "group" or "layer" (over C)."""
    _check_dims(spatial_dims)
    if name == "batch":
        return _BATCH_NORM[spatial_dims](channels)
    if name == "instance":
        return _INSTANCE_NORM[spatial_dims](channels, affine=True)
    if name == "group":
        # largest divisor of channels not above `groups`, so any width works
        count = max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)
        return nn.GroupNorm(count, channels)
    if name == "layer":
        return ChannelLayerNorm(channels)
    raise ConfigError(f"unknown norm {name!r}; valid: {', '.join(NORMS)}")


def activation(name: str) -> nn.Module:
    """A fresh activation module: "relu", "gelu", "silu", "leaky_relu" or "relu6"."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvNormAct(nn.Sequential):
    """conv -> norm -> activation with 'same' padding (kernel // 2); `act=None` leaves it linear."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm: str | None = "batch",
        act: str | None = "relu",
    ) -> None:
        conv = conv_type(spatial_dims)(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=norm is None,  # a following norm has its own shift
        )
        super().__init__()
        self.conv = conv
        self.norm = norm_layer(norm, spatial_dims, out_channels) if norm else nn.Identity()
        self.act = activation(act) if act else nn.Identity()
