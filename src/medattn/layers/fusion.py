"""Joining a vector of clinical variables (age, sex, ...) to an image model's pooled features.

`concat`: the clinical values pass a small MLP and are appended to the image features (the head sees both).
`film`: feature-wise linear modulation (Perez et al. 2018): the clinical values give a scale and a shift per
image feature, features * (1 + gamma) + beta, so the variables change how the image evidence is weighed.
FiLM starts as the identity on the image side (its layer is zero-initialised). Called without clinical values
(an image explained alone), the fusion uses `missing`: the vector of a patient whose every value is unknown.
"""

from __future__ import annotations

import torch
from torch import nn

CLINICAL_WIDTH = 16  # the clinical embedding: a handful of variables needs no more


def pooled(features: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """One vector per input, (B, C), from a backbone's feature map (B, C, *grid) (mean over the grid), tokens
    (B, T, C) (mean over the tokens), or features already pooled (B, C)."""
    if features.ndim == 2 + spatial_dims:
        return features.flatten(2).mean(dim=2)
    return features.mean(dim=1) if features.ndim == 3 else features


class ClinicalFusion(nn.Module):
    def __init__(self, channels: int, inputs: int, *, mode: str, missing: list[float] | None = None) -> None:
        super().__init__()
        self.mode, self.inputs = mode, inputs
        if missing is not None and len(missing) != inputs:
            raise ValueError(f"the missing-values vector has {len(missing)} values, expected {inputs}")
        self.register_buffer("missing", torch.tensor(missing or [0.0] * inputs, dtype=torch.float32))
        if mode == "concat":
            self.embed = nn.Sequential(nn.Linear(inputs, CLINICAL_WIDTH), nn.ReLU())
            self.out_channels = channels + CLINICAL_WIDTH
        else:
            self.embed = nn.Linear(inputs, 2 * channels)
            nn.init.zeros_(self.embed.weight)
            nn.init.zeros_(self.embed.bias)
            self.out_channels = channels

    def forward(self, features: torch.Tensor, clinical: torch.Tensor | None) -> torch.Tensor:
        """(B, C) image features and (B, F) clinical values (None: all unknown) -> (B, out_channels); FiLM also
        modulates a feature map (B, C, *grid), each channel over its whole grid (a U-Net's bottleneck)."""
        if clinical is None:
            clinical = self.missing.expand(len(features), -1)
        clinical = clinical.to(features.dtype)
        if clinical.shape[-1] != self.inputs:
            raise ValueError(f"expected {self.inputs} clinical values per input, got {clinical.shape[-1]}")
        if self.mode == "concat":
            return torch.cat([features, self.embed(clinical)], dim=1)
        gamma, beta = self.embed(clinical).chunk(2, dim=1)  # (B, C) each
        grid = (...,) + (None,) * (features.ndim - 2)  # (B, C, 1, ...) for a feature map
        return features * (1 + gamma[grid]) + beta[grid]
