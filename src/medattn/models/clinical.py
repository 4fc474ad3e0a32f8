"""Clinical variables beside the image for any registered classifier, regressor or segmenter: a wrapper built when
a model's options carry `tabular` ({"width": F, "fusion": "concat" | "film", "missing": the all-unknown vector}).

A classifier's feature map (its forward_features) is pooled to one vector per image, the clinical vector (B, F)
joins it by concatenation or FiLM (layers/fusion.py, the same layer attention MIL uses), and a new linear head
reads the result. A segmenter's last decoder map is FiLM-modulated by the vector before its 1x1 head: each channel
scaled and shifted over the whole grid, so the head's per-pixel decision can follow the patient's values. Not at
a U-Net's bottleneck: the normalisation in the decoder's next block removes a per-channel shift there, and that
place would exclude the segmenters without a bottleneck. Concatenation would change the head's width, so
segmentation takes FiLM only. Called with the image alone, as explain, export and
predict without a table do, the fusion uses the all-unknown vector: the image-only path that clinical dropout
trains (data/clinical_images.py).
"""

from __future__ import annotations

import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.layers.fusion import ClinicalFusion, pooled
from medattn.models.base import ModelBase, check_choice
from medattn.models.mil import InstanceFeatures
from medattn.models.unet import Segmenter

OPTION = "tabular"  # the options key that asks for the wrapper (attention MIL's own `clinical` is its count)
FUSIONS = ("concat", "film")


class ClinicalModel(ModelBase):
    def __init__(
        self,
        *,
        backbone: nn.Module,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        width: int,
        fusion: str,
        missing: list[float] | None,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        check_choice("clinical fusion", fusion, FUSIONS)
        channels = getattr(backbone, "feature_channels", 0)
        if not channels or not hasattr(backbone, "forward_features"):
            raise ConfigError("clinical fusion needs a backbone with forward_features and feature_channels")
        if isinstance(getattr(backbone, "head", None), nn.Module):
            backbone.head = nn.Identity()  # replaced by the head below (and DDP wants every weight used)
        self.features = InstanceFeatures(backbone)
        self.modalities = getattr(backbone, "modalities", None)  # `--missing` leaves these out of the image
        inner = getattr(backbone, "cam_layer", None)
        self.cam_layer = f"features.encoder.{inner}" if inner else "features"
        self.clinical_inputs = width
        self.fusion = ClinicalFusion(channels, width, mode=fusion, missing=missing)
        self.feature_channels = self.fusion.out_channels
        self.head = nn.Linear(self.feature_channels, num_classes)

    def forward_features(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, *S) images and (B, F) clinical vectors (None: every value unknown) -> (B, feature_channels)."""
        return self.fusion(pooled(self.features(x), self.spatial_dims), clinical)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, K)

    def forward(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, clinical))


class ClinicalSegmenter(ModelBase):
    """Any registered segmenter whose last decoder map, (B, C, *S) from forward_features, is FiLM-modulated by the
    clinical vector before its head reads it."""

    def __init__(
        self, *, backbone: nn.Module, width: int, fusion: str, missing: list[float] | None, spatial_dims: int
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=backbone.in_channels, num_classes=backbone.num_classes)
        if fusion != "film":
            raise ConfigError(f"segmentation fuses clinical values by film only; got {fusion!r}")
        if getattr(backbone, "deep_supervision", False):
            raise ConfigError("clinical values and deep_supervision do not go together (the aux heads skip the FiLM)")
        self.net = backbone
        self.fusion = ClinicalFusion(backbone.feature_channels, width, mode=fusion, missing=missing)
        self.modalities = getattr(backbone, "modalities", None)
        self.clinical_inputs = width
        self.feature_channels = backbone.feature_channels
        self.aux_logits: list[torch.Tensor] = []  # no deep supervision (refused above)

    def forward_features(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        return self.fusion(self.net.forward_features(x), clinical)  # (B, C, *S)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(features)  # (B, K, *S)

    def forward(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, clinical))


class BoundClinical(nn.Module):
    """A clinical model with one case's vector bound: forward(x) gives model(x, vector) for every input in x (the
    windows of a sliding window all come from that case)."""

    def __init__(self, model: nn.Module, vector: torch.Tensor) -> None:
        super().__init__()
        self.model, self.vector = model, vector  # (1, F) or (F,)
        self.clinical_inputs = model.clinical_inputs
        self.modalities = getattr(model, "modalities", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.vector.reshape(1, -1).to(x.device).expand(len(x), -1))


def wrap_clinical(build, *, name: str, spatial_dims: int, in_channels: int, num_classes: int, options: dict):
    """The model `name` built by `build(options)` (the registry's builder, or its modality fusion) with the
    clinical vector options[OPTION] describes fused before a new head."""
    options = dict(options)
    tabular = dict(options.pop(OPTION))
    if set(tabular) - {"width", "fusion", "missing"} or "width" not in tabular:
        raise ConfigError(f"model option {OPTION!r} takes width, fusion and missing; got {sorted(tabular)}")
    backbone = build(options)
    if getattr(backbone, "fusion", None) == "late":  # models/fusion.py: outputs combined, no features to fuse
        raise ConfigError("clinical values join the image features: use --fusion early, hemis or cross_attention")
    if any(isinstance(m, Segmenter) for m in backbone.modules()):  # a map per image (alone or over modalities)
        model = ClinicalSegmenter(
            backbone=backbone,
            width=int(tabular["width"]),
            fusion=tabular.get("fusion", "film"),
            missing=tabular.get("missing"),
            spatial_dims=spatial_dims,
        )
        model._record(name, **backbone.config["options"], **{OPTION: tabular})
        return model
    model = ClinicalModel(
        backbone=backbone,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        width=int(tabular["width"]),
        fusion=tabular.get("fusion", "concat"),
        missing=tabular.get("missing"),
    )
    inner = backbone.config["options"] if hasattr(backbone, "config") else options
    model._record(name, **inner, **{OPTION: tabular})
    return model
