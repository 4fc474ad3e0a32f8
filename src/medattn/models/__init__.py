"""Model families, one file each, all built from medattn.layers and registered by name.

Importing this package registers every family; build models with `create_model(name, ...)`.
"""

from torch import nn

from medattn.models import (  # noqa: F401  (each registers its models)
    anchorfree,
    classic,
    cnn,
    diffusion,
    faster_rcnn,
    hybrid,
    inception,
    mil,
    mobile,
    monai_nets,
    multitask,
    resnet,
    segmenters,
    translation,
    unet,
    vit,
)
from medattn.models.base import Classifier, ModelBase
from medattn.models.unet import Segmenter
from medattn.registry import MODELS, create_model


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["MODELS", "Classifier", "ModelBase", "Segmenter", "count_parameters", "create_model"]
