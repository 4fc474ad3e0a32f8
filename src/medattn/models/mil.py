"""Attention-based multiple instance learning (Ilse et al. 2018): a patient's images (slices, patches) form a
bag with one label; an instance encoder embeds each, gated attention pools them, a bag classifier decides.

Input: bags (B, N, C, *S), bags shorter than N padded with NaN instances (masked out of the encoder and the
attention), or plain images (B, C, *S), each then a bag of one (what explain's maps and the model contract
give). The encoder is any registered classifier backbone, 2D or 3D; its head is dropped and its features are
averaged over their grid (or tokens) to one vector per instance. Optional clinical variables (B, F) join the
bag's vector by concatenation or FiLM (layers/fusion.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medattn.layers.fusion import ClinicalFusion, pooled
from medattn.layers.mil import GatedAttentionPool
from medattn.models.base import Classifier, check_choice
from medattn.registry import MODELS, create_model

# The default instance encoder: the small attention ResNet with a stride-2 stem, one block a stage; a bag holds
# tens of images, so an instance must cost a fraction of what a whole-image classifier's input does.
ENCODER = "attn_resnet"
ENCODER_OPTIONS = {
    2: {"widths": [16, 32, 64], "depths": [1, 1, 1], "stem_stride": 2, "attention": "cbam"},
    3: {"widths": [16, 32, 64], "depths": [1, 1, 1], "stem_stride": 2, "attention": "se"},
}


class InstanceFeatures(nn.Module):
    """The encoder's feature map of each instance, (M, C, *grid) or tokens (M, T, C): the layer explain's CAMs
    read by default (the bag vector after pooling has no grid)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (M, C_in, *S)
        return self.encoder.forward_features(x)


class AttentionMIL(Classifier):
    cam_layer = "instances"

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        encoder: nn.Module,
        attention_dim: int,
        dropout: float,
        clinical: int,
        clinical_fusion: str,
        clinical_missing: list[float] | None,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        if isinstance(getattr(encoder, "head", None), nn.Module):
            encoder.head = nn.Identity()  # unused: only the features are pooled (and DDP wants every weight used)
        channels = encoder.feature_channels
        self.instances = InstanceFeatures(encoder)
        self.pool = GatedAttentionPool(channels, hidden=attention_dim, dropout=dropout)
        self.fusion = None
        if clinical:
            self.fusion = ClinicalFusion(channels, clinical, mode=clinical_fusion, missing=clinical_missing)
        self.feature_channels = channels if self.fusion is None else self.fusion.out_channels
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_channels, num_classes))

    def forward_bag(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, K), attention weights (B, N)) of bags (B, N, C, *S) or images (B, C, *S)."""
        features, weights = self._embed(x, clinical)
        return self.forward_head(features), weights

    def forward_features(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        return self._embed(x, clinical)[0]  # (B, feature_channels)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, K)

    def forward(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, clinical))

    def _embed(self, x: torch.Tensor, clinical: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim == 2 + self.spatial_dims:
            x = x[:, None]  # (B, 1, C, *S): each image a bag of one
        batch, count = x.shape[:2]
        present = ~torch.isnan(x.flatten(2)).any(dim=2)  # (B, N): padding instances are all NaN
        features = self.instances(x[present])  # (M, C, *grid) or tokens (M, T, C), M instances present
        vectors = pooled(features, self.spatial_dims)  # (M, C)
        packed = vectors.new_zeros(batch, count, vectors.shape[-1])  # (B, N, C)
        packed[present] = vectors
        bag, weights = self.pool(packed, present)  # (B, C), (B, N)
        if self.fusion is not None:
            bag = self.fusion(bag, clinical)  # None: every clinical value unknown
        return bag, weights


@MODELS.register(
    "attention_mil",
    tasks=("mil",),
    description="attention MIL: an instance encoder, gated attention pooling and a bag classifier (Ilse 2018)",
)
def attention_mil(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    encoder: str = ENCODER,
    encoder_options: dict[str, Any] | None = None,
    attention_dim: int = 64,
    dropout: float = 0.25,
    clinical: int = 0,
    clinical_fusion: str = "concat",
    clinical_missing: list[float] | None = None,
) -> AttentionMIL:
    """Attention MIL over any registered classifier backbone (`encoder`, built with `encoder_options`); with
    `clinical` values per bag fused by `clinical_fusion` (concat | film), `clinical_missing` their all-unknown
    vector (set by the task from the data)."""
    check_choice("clinical_fusion", clinical_fusion, ("concat", "film"))
    if encoder_options is None:
        encoder_options = dict(ENCODER_OPTIONS[spatial_dims]) if encoder == ENCODER else {}
    backbone = create_model(
        encoder, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=1, options=encoder_options
    )
    model = AttentionMIL(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        encoder=backbone,
        attention_dim=attention_dim,
        dropout=dropout,
        clinical=clinical,
        clinical_fusion=clinical_fusion,
        clinical_missing=clinical_missing,
    )
    model._record(
        "attention_mil",
        encoder=encoder,
        encoder_options=backbone.config["options"],
        attention_dim=attention_dim,
        dropout=dropout,
        clinical=clinical,
        clinical_fusion=clinical_fusion,
        clinical_missing=clinical_missing,
    )
    return model
