"""Segmenting a whole image or volume with a model trained on patches, as training validated it.

The image is prepared by the card's input specification (engine/inputs.py: intensity per channel, resampled to
the model's spacing), covered by the engine's sliding window (Gaussian blending, half-patch overlap; optional
test-time flips), and the softmax is resampled linearly to the input's own grid before the argmax, so the mask
lies voxel for voxel on the input (and a NIfTI written with the input's meta overlays it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medattn.data.meta import ImageMeta
from medattn.data.preprocess import Intensity
from medattn.engine.inputs import InputSpec


@dataclass
class SegmentationPlan:
    """What the model card says a segmentation model needs (its input section, and the masks' encoding)."""

    spatial_dims: int
    in_channels: int
    num_classes: int
    patch: list[int]
    spacing: list[float] | None  # mm to resample to; None: the image's own grid
    intensity: Intensity
    binary_255: bool = False  # masks stored as 0/255 read as 0/1
    channel_names: list[str] | None = None
    source_spacing: list[float] | None = None
    slice_axis: int | None = None  # 2D models on volumes (engine/inputs.py)

    @property
    def spec(self) -> InputSpec:
        return InputSpec(
            spatial_dims=self.spatial_dims,
            channels=self.in_channels,
            intensity=self.intensity,
            patch=list(self.patch),
            spacing=self.spacing,
            channel_names=self.channel_names,
            source_spacing=self.source_spacing,
            slice_axis=self.slice_axis,
        )

    @classmethod
    def from_card(cls, card: dict) -> SegmentationPlan:
        spec = InputSpec.from_card(card)
        return cls(
            spatial_dims=spec.spatial_dims,
            in_channels=spec.channels,
            num_classes=card["model"]["num_classes"],
            patch=list(spec.patch),
            spacing=spec.spacing,
            intensity=spec.intensity,
            binary_255=bool(card["input"].get("binary_255", False)),
            channel_names=spec.channel_names,
            source_spacing=spec.source_spacing,
            slice_axis=spec.slice_axis,
        )

    def to_card(self) -> dict:
        return {**self.spec.to_card(), "binary_255": self.binary_255}


def softmax(logits):
    if isinstance(logits, np.ndarray):  # an ONNX Runtime network's output
        from medattn.engine import numeric

        return numeric.softmax(logits, axis=1)
    return logits.softmax(dim=1)


def _labels(probs) -> np.ndarray:
    """Argmax over classes (K, *S) -> (*S) uint8, for a tensor or an array."""
    return np.asarray(probs.argmax(0)).astype(np.uint8)


def segment_probs(model, image: np.ndarray, meta: ImageMeta, plan: SegmentationPlan, *, device, where: str, flips=None):
    """Softmax (K, *S) on the input's own grid for a raw image (C, *S) as read from disk."""
    from medattn.engine.inferers import sliding_window

    spec = plan.spec
    image = spec.fit(image, where=where)
    x = spec.prepare(image, meta, where=where)
    probs = sliding_window(model, x, patch=plan.patch, transform=softmax, device=device, flips=flips)
    if tuple(probs.shape[1:]) != tuple(image.shape[1:]) and isinstance(probs, np.ndarray):
        from medattn.engine.numeric import interpolate

        return interpolate(probs[None], image.shape[1:], mode="linear")[0]
    if tuple(probs.shape[1:]) != tuple(image.shape[1:]):
        import torch.nn.functional as F

        mode = "bilinear" if plan.spatial_dims == 2 else "trilinear"
        probs = F.interpolate(probs[None], size=tuple(image.shape[1:]), mode=mode, align_corners=False)[0]
    return probs


def segment(model, image: np.ndarray, meta: ImageMeta, plan: SegmentationPlan, *, device, where: str, flips=None):
    """Labels (*S) uint8 on the input's own grid for a raw image (C, *S) as read from disk."""
    probs = segment_probs(model, image, meta, plan, device=device, where=where, flips=flips)
    return _labels(probs)


def ensemble_segment(
    members, image: np.ndarray, meta: ImageMeta, *, device, where: str, tta: bool = False, patient: str | None = None
):
    """Labels (*S) uint8 from the mean softmax of every member (a run is an ensemble of one), each member
    preparing the image with its own card; with `tta`, each also averages over the flips it trained with. A member
    trained with clinical values reads `patient`'s (None: every value unknown).

    A volume given to 2D models is segmented slice by slice along engine/inputs.py's `slice_axis` and the slices
    stacked back, so the mask is one volume on the input's grid.
    """
    from medattn.data.clinical_images import member_model
    from medattn.engine.loaded import tta_flips

    plans = [SegmentationPlan.from_card(member.card) for member in members]
    if plans[0].spec.is_volume_for_slices(image):
        axis, views = plans[0].spec.slices(image, meta)
        cuts = [
            ensemble_segment(members, cut, cut_meta, device=device, where=where, tta=tta, patient=patient)
            for cut, cut_meta in views
        ]
        return np.stack(cuts, axis=axis)
    total = None
    for member, plan in zip(members, plans, strict=True):
        flips = tta_flips(member.config, plan.spatial_dims) if tta else None
        model = member_model(member, patient, where=where)
        probs = segment_probs(model, image, meta, plan, device=device, where=where, flips=flips)
        total = probs if total is None else total + probs
    return _labels(total)
