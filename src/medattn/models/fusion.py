"""Several named input modalities (MR sequences, CT phases) fused by any registered model: a wrapper built when a
model's options carry `modalities` (their names) and `fusion`.

The input's channels split evenly into the modalities, in order. A modality that is absent (not acquired, or
dropped in training by `train.modality_dropout`) has every value NaN; each fusion runs on whatever subset is
present (at least one):
- `early`: the channels stacked, as without the wrapper; an absent modality's channels are zeros and one
  indicator channel per modality says which are present (the backbone takes C + M channels).
- `late`: one backbone per modality, their outputs combined with learned weights, a softmax over the modalities
  present (works for dense outputs too: the weights apply per pixel map).
- `hemis`: one backbone's features per modality, fused by their mean and variance over the modalities present
  (Havaei et al. 2016), projected back to the features' width and read by the first backbone's head.
- `cross_attention`: the features of each modality, as tokens, attend to the other present modalities' tokens
  (symmetric: every modality queries the others, one shared attention, residual), then are averaged over the
  modalities present and read by the first backbone's head.
`hemis` and `cross_attention` need backbones with forward_features / forward_head (the classifiers).
"""

from __future__ import annotations

import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.layers.attention import MultiHeadAttention
from medattn.models.base import ModelBase

FUSIONS = ("early", "late", "hemis", "cross_attention")
CONTEXT_GRID = 8  # cross-attention's keys: each modality's map averaged to at most 8 cells per axis


def absent_modalities(x: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x with NaN set to 0, (B, M) bool: each modality present) for an input (B, C, *S) of `count` modalities."""
    groups = x.reshape(x.shape[0], count, -1)  # (B, M, C/M * prod(S))
    present = ~torch.isnan(groups).all(dim=2)
    return torch.nan_to_num(x, nan=0.0), present


def blank_modalities(x: torch.Tensor, names: list[str], missing: list[str]) -> torch.Tensor:
    """x (B, C, *S) with the channels of the `missing` modalities set to NaN (absent)."""
    unknown = sorted(set(missing) - set(names))
    if unknown:
        raise ConfigError(f"--missing {', '.join(unknown)}: not a modality of this model ({', '.join(names)})")
    if set(missing) >= set(names):
        raise ConfigError(f"--missing {', '.join(missing)}: at least one modality must be present")
    x = x.clone()
    per = x.shape[1] // len(names)
    for name in missing:
        index = names.index(name)
        x[:, index * per : (index + 1) * per] = float("nan")
    return x


class ModalityFusion(ModelBase):
    def __init__(
        self, *, build, spatial_dims: int, in_channels: int, num_classes: int, modalities: list[str], fusion: str
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        count = len(modalities)
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
        if count < 1 or in_channels % count:
            raise ConfigError(f"{in_channels} input channels do not split into {count} modalities ({modalities})")
        self.modalities, self.fusion = list(modalities), fusion
        per = in_channels // count
        if fusion == "early":
            self.backbones = nn.ModuleList([build(in_channels + count)])
        else:
            self.backbones = nn.ModuleList([build(per) for _ in modalities])
        first = self.backbones[0]
        self.feature_channels = getattr(first, "feature_channels", 0)
        if fusion == "late":
            self.weights = nn.Parameter(torch.zeros(count))
        if fusion in ("hemis", "cross_attention") and not hasattr(first, "forward_head"):
            raise ConfigError(f"fusion {fusion!r} needs a backbone with forward_features and forward_head")
        if fusion == "hemis":
            self.project = nn.Linear(2 * self.feature_channels, self.feature_channels)
        if fusion == "cross_attention":
            self.norm = nn.LayerNorm(self.feature_channels)
            heads = 4 if self.feature_channels % 4 == 0 else 1
            self.cross = MultiHeadAttention(self.feature_channels, heads=heads)

    def _parts(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x, present = absent_modalities(x, len(self.modalities))
        return list(x.chunk(len(self.modalities), dim=1)), present  # M x (B, C/M, *S), (B, M)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion == "early":
            filled, present = absent_modalities(x, len(self.modalities))
            indicator = present.to(filled.dtype)[(...,) + (None,) * self.spatial_dims].expand(
                -1, -1, *filled.shape[2:]
            )  # (B, M, *S)
            return self.backbones[0](torch.cat([filled, indicator], dim=1))
        if self.fusion == "late":
            parts, present = self._parts(x)
            outputs = torch.stack([net(part) for net, part in zip(self.backbones, parts, strict=True)], dim=1)
            weights = self.weights.expand(len(x), -1).masked_fill(~present, float("-inf")).softmax(dim=1)  # (B, M)
            return (outputs * weights[(...,) + (None,) * (outputs.ndim - 2)]).sum(dim=1)  # (B, K, ...)
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion in ("early", "late"):
            if self.fusion == "late":
                raise ConfigError("late fusion combines outputs; its features are per modality")
            filled, present = absent_modalities(x, len(self.modalities))
            indicator = present.to(filled.dtype)[(...,) + (None,) * self.spatial_dims].expand(-1, -1, *filled.shape[2:])
            return self.backbones[0].forward_features(torch.cat([filled, indicator], dim=1))
        parts, present = self._parts(x)
        features = torch.stack([net.forward_features(p) for net, p in zip(self.backbones, parts, strict=True)], 1)
        grid = features.ndim == 3 + self.spatial_dims  # (B, M, C, *g); else tokens (B, M, T, C)
        tokens = features.flatten(3).transpose(2, 3) if grid else features  # (B, M, T, C)
        weight = present.to(tokens.dtype)[:, :, None, None]  # (B, M, 1, 1)
        count = weight.sum(dim=1).clamp(min=1)
        if self.fusion == "hemis":
            mean = (tokens * weight).sum(dim=1) / count  # (B, T, C)
            var = (((tokens - mean[:, None]) ** 2) * weight).sum(dim=1) / count  # 0 with one modality present
            fused = self.project(torch.cat([mean, var], dim=-1))
        else:
            fused = self._cross(tokens, self._context(features) if grid else tokens, present, weight, count)
        if grid:  # back onto the grid the head expects: (B, C, *g)
            return fused.transpose(1, 2).reshape(len(x), fused.shape[-1], *features.shape[3:])
        return fused  # (B, T, C)

    def _context(self, features: torch.Tensor) -> torch.Tensor:
        """(B, M, T', C) keys and values: each modality's feature map averaged down to at most CONTEXT_GRID per
        axis, so a full-resolution map (a U-Net's last decoder level) costs T x T' attention, not T x T."""
        batch, m, c = features.shape[:3]
        grid = [min(s, CONTEXT_GRID) for s in features.shape[3:]]
        pooled = nn.functional.adaptive_avg_pool2d if self.spatial_dims == 2 else nn.functional.adaptive_avg_pool3d
        small = pooled(features.flatten(0, 1), grid)  # (B M, C, *g')
        return small.reshape(batch, m, c, -1).transpose(2, 3)  # (B, M, T', C)

    def _cross(self, tokens, context, present, weight, count) -> torch.Tensor:
        """Each present modality's tokens (B, M, T, C) attend to the other present modalities' `context`
        (B, M, T', C); the residual sum, averaged over the modalities present: (B, T, C)."""
        batch, m, _, c = tokens.shape
        length = context.shape[2]
        queries, keys = self.norm(tokens), self.norm(context)
        updated = []
        for i in range(m):
            others = [j for j in range(m) if j != i]
            if not others:
                updated.append(tokens[:, i])
                continue
            others_context = keys[:, others].reshape(batch, len(others) * length, c)  # (B, (M-1) T', C)
            keep = present[:, others].repeat_interleave(length, dim=1)  # absent modalities masked out
            attended = self.cross(queries[:, i], others_context, keep=keep)
            has_other = present[:, others].any(dim=1).to(tokens.dtype)[:, None, None]  # else the residual alone
            updated.append(tokens[:, i] + attended * has_other)
        stacked = torch.stack(updated, dim=1)  # (B, M, T, C)
        return (stacked * weight).sum(dim=1) / count

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbones[0].forward_head(features)


def fusion_options(config, in_channels: int) -> dict:
    """config.model.options with the modalities (data.modalities) and their fusion (model.fusion, default
    early), after checking that the data's channels split evenly among the modalities."""
    names = config.data.modalities
    if in_channels % len(names):
        raise ConfigError(
            f"data.modalities {names}: the images have {in_channels} channels, which do not split evenly into "
            f"{len(names)} modalities"
        )
    return {**config.model.options, "modalities": list(names), "fusion": config.model.fusion or "early"}


def wrap(builder, *, name: str, spatial_dims: int, in_channels: int, num_classes: int, options: dict):
    """The model `name` with `options`, fused over options["modalities"] by options["fusion"] (default early)."""
    options = dict(options)
    modalities, fusion = list(options.pop("modalities")), options.pop("fusion", "early")

    def build(channels: int):
        return builder(spatial_dims=spatial_dims, in_channels=channels, num_classes=num_classes, **options)

    model = ModalityFusion(
        build=build,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        modalities=modalities,
        fusion=fusion,
    )
    inner = model.backbones[0].config["options"] if hasattr(model.backbones[0], "config") else options
    model._record(name, **inner, modalities=modalities, fusion=fusion)
    return model
