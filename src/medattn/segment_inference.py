"""Segmenting a whole image or volume with a model trained on patches, as training validated it.

Sliding-window inference (MONAI's `sliding_window_inference`, Gaussian blending, half-patch overlap) covers
images of any size: an image smaller than the patch is first padded with each channel's minimum (what
training padded with) and cropped back after. The softmax is computed at the model's spacing, resampled
linearly to the input's own grid when the two differ, and only then turned into labels by argmax, so the
mask lies voxel for voxel on the input (and a NIfTI written with the input's meta overlays it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medattn.data.meta import ImageMeta
from medattn.data.preprocess import Intensity
from medattn.errors import DataError

OVERLAP = 0.5


@dataclass
class SegmentationPlan:
    """What the model card says a segmentation model needs (input section of model.json)."""

    spatial_dims: int
    in_channels: int
    num_classes: int
    patch: list[int]
    spacing: list[float] | None  # mm to resample to; None: the image's own grid
    intensity: Intensity
    binary_255: bool = False  # masks stored as 0/255 read as 0/1

    @classmethod
    def from_card(cls, card: dict) -> SegmentationPlan:
        spec, given = card["model"], card["input"]
        return cls(
            spatial_dims=spec["spatial_dims"],
            in_channels=spec["in_channels"],
            num_classes=spec["num_classes"],
            patch=list(given["patch"]),
            spacing=given.get("spacing_mm"),
            intensity=Intensity.from_dict(given["intensity"]),
            binary_255=bool(given.get("binary_255", False)),
        )

    def to_card(self) -> dict:
        return {
            "layout": "channel-first (C, H, W) or (C, D, H, W)",
            "channels": self.in_channels,
            "patch": self.patch,
            "size": self.patch,
            "spacing_mm": self.spacing,
            "intensity": self.intensity.to_dict(),
            "intensity_per_channel": True,  # the mode runs on each channel alone; one mean and std for all
            "binary_255": self.binary_255,
        }


def sliding_probs(model, x, *, patch: Sequence[int], device, amp: bool = False, batch: int = 4):
    """Softmax (K, *S) float32 on the CPU for one standardised image x (C, *S)."""
    import torch
    from monai.inferers import sliding_window_inference

    from medattn.data.segmentation_patches import crop, pad_values
    from medattn.train.device import autocast

    shape = tuple(x.shape[1:])
    padded = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))
    if padded != shape:
        x = crop(x, [0] * len(shape), padded, pad_values(x))
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(device, amp):
        logits = sliding_window_inference(
            x[None].to(device),
            roi_size=tuple(patch),
            sw_batch_size=batch,
            predictor=model,
            overlap=OVERLAP,
            mode="gaussian",
        )
    model.train(was_training)
    probs = torch.softmax(torch.as_tensor(logits).float(), dim=1)[0].cpu()  # (K, *padded)
    return probs[(slice(None), *(slice(0, s) for s in shape))]


def check_input(image: np.ndarray, plan: SegmentationPlan, *, where: str) -> np.ndarray:
    """The image as the model takes it, or an error naming the file: dimensions and channels must fit.

    A 2D image stored as a one-slice NIfTI, (C, X, Y, 1), counts as 2D.
    """
    spatial = image.shape[1:]
    if plan.spatial_dims == 2 and len(spatial) == 3 and spatial[-1] == 1:
        image = image[..., 0]
    dims = image.ndim - 1
    if dims != plan.spatial_dims:
        kind = "a 3D volume" if dims == 3 else "a 2D image"
        raise DataError(
            f"{where}: {kind} of shape {list(spatial)}, but the model is {plan.spatial_dims}D "
            f"(trained on {plan.spatial_dims}D {'volumes' if plan.spatial_dims == 3 else 'images'})"
        )
    if image.shape[0] == 3 and plan.in_channels == 1 and np.array_equal(image[0], image[1]):
        image = image[:1]  # a gray picture saved as RGB
    if image.shape[0] != plan.in_channels:
        raise DataError(f"{where}: {image.shape[0]} channel(s), but the model takes {plan.in_channels}")
    return image


def segment(model, image: np.ndarray, meta: ImageMeta, plan: SegmentationPlan, *, device, where: str) -> np.ndarray:
    """Labels (*S) uint8 on the input's own grid for a raw image (C, *S) as read from disk."""
    import torch.nn.functional as F

    from medattn.data.segmentation_load import prepare_image

    image = check_input(image, plan, where=where)
    spacing = meta.spacing[: plan.spatial_dims]
    meta2d = meta if len(meta.spacing) == image.ndim - 1 else ImageMeta(spacing=spacing, affine=meta.affine)
    x = prepare_image(image, meta2d, plan.intensity, plan.spacing)
    probs = sliding_probs(model, x, patch=plan.patch, device=device)
    if tuple(probs.shape[1:]) != tuple(image.shape[1:]):
        mode = "bilinear" if plan.spatial_dims == 2 else "trilinear"
        probs = F.interpolate(probs[None], size=tuple(image.shape[1:]), mode=mode, align_corners=False)[0]
    return probs.argmax(dim=0).numpy().astype(np.uint8)
