"""The surface every model shares: forward_features, forward_head, forward, config."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medattn.errors import ConfigError


class ModelBase(nn.Module):
    """Base for every model built by name through the registry (classifiers and segmenters).

    Subclasses build their layers, then call `_record(name, **options)` with the registry name and the
    options they were given, so `config` can rebuild the model:
    `create_model(c["name"], spatial_dims=..., in_channels=..., num_classes=..., options=c["options"])`.
    """

    def __init__(self, *, spatial_dims: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if in_channels < 1 or num_classes < 1:
            raise ConfigError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.feature_channels = 0  # set by subclasses: channels of forward_features' output
        self._name = ""
        self._options: dict[str, Any] = {}

    def _record(self, name: str, **options: Any) -> None:
        self._name = name
        # tuples become lists so the config round-trips through YAML/JSON unchanged
        self._options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: registry name, dims, channels, classes, options."""
        return {
            "name": self._name,
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "options": dict(self._options),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # subclasses define forward_features (input -> features) and forward_head (features -> logits)
        return self.forward_head(self.forward_features(x))


class Classifier(ModelBase):
    """Base for classifiers: forward_features gives the last feature map (B, C, *grid) or tokens (B, N, C);
    forward_head gives logits (B, num_classes)."""


def check_choice(option: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ConfigError(f"{option} must be one of {', '.join(valid)}; got {value!r}")
    return value


def check_lengths(**sequences: tuple[int, ...] | list[int]) -> None:
    """All named sequences must be non-empty and of equal length (e.g. widths and depths)."""
    lengths = {name: len(seq) for name, seq in sequences.items()}
    if min(lengths.values()) == 0 or len(set(lengths.values())) > 1:
        raise ConfigError(f"options must be non-empty and of equal length, got lengths {lengths}")
