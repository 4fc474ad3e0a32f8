"""The input specification: how an image read from disk becomes what the model was trained on.

Written to the model card (`input`) by training and read back by every inference path, for every task:
channels, the intensity recipe (mode, then the training set's mean and standard deviation), and either a
whole-image `size` (images resized to it) or a `patch` with a `spacing` (images resampled to the spacing and
covered by a sliding window of the patch).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from medattn.data.meta import ImageMeta
from medattn.data.preprocess import Intensity
from medattn.errors import DataError

# `--slice-axis` on evaluate and predict: set for the command's duration by engine/loaded.py's `reading`.
SLICE_AXIS: ContextVar[int | None] = ContextVar("slice_axis", default=None)
# `--missing` on evaluate and predict: the named modalities to leave out (models/fusion.py), set the same way;
# `clinical` among them leaves out the clinical vector (models/clinical.py: the image-only path).
MISSING: ContextVar[tuple[str, ...]] = ContextVar("missing", default=())
# `--clinical TABLE` on predict: the per-patient table image files are looked up in (data/clinical_images.py).
CLINICAL: ContextVar[str | None] = ContextVar("clinical", default=None)


def apply_missing(model, x):
    """The model's inputs with what `--missing` names left out: modalities made absent (NaN) in the images
    (B, C, *S), and `clinical` dropped from (images, clinical vectors); x unchanged when nothing is missing."""
    missing = MISSING.get()
    if not missing:
        return x
    if "clinical" in missing:
        if not getattr(model, "clinical_inputs", 0):
            raise DataError("--missing clinical: only a model trained with --clinical has clinical values to leave out")
        missing = tuple(name for name in missing if name != "clinical")
        x = x[0] if isinstance(x, tuple | list) else x
    if not missing:
        return x
    names = getattr(model, "modalities", None)
    if names is None or not hasattr(x[0] if isinstance(x, tuple | list) else x, "clone"):
        raise DataError("--missing: only a PyTorch model trained with --modalities has modalities to leave out")
    from medattn.models.fusion import blank_modalities

    if isinstance(x, tuple | list):
        return (blank_modalities(x[0], names, list(missing)), *x[1:])
    return blank_modalities(x, names, list(missing))


@dataclass
class InputSpec:
    spatial_dims: int
    channels: int
    intensity: Intensity
    size: list[int] | None = None  # whole-image input: resized to this
    patch: list[int] | None = None  # patch input: sliding window of this size
    spacing: list[float] | None = None  # mm to resample to (patch input); None: each image's own grid
    channel_names: list[str] | None = None
    source_spacing: list[float] | None = None  # mm of the training images as read, before any resampling
    slice_axis: int | None = None  # 2D models on volumes: the axis to cut along; None: by spacing (`slice_axis`)

    @property
    def sliding(self) -> bool:
        return self.patch is not None

    def is_volume_for_slices(self, image: np.ndarray) -> bool:
        """A volume (C, X, Y, Z) given to a 2D model, which then reads it slice by slice (a one-slice NIfTI, with a
        last axis of 1, is a 2D image and is not sliced)."""
        spatial = image.shape[1:]
        return self.spatial_dims == 2 and len(spatial) == 3 and spatial[-1] != 1

    def axis_for(self, image: np.ndarray, meta: ImageMeta | None) -> int:
        """The axis a 2D model cuts this volume (C, X, Y, Z) along: `--slice-axis`, else the card's, else the one
        `slice_axis` picks from the spacing."""
        for chosen in (SLICE_AXIS.get(), self.slice_axis):
            if chosen is not None:
                return chosen
        return slice_axis(meta.spacing[:3] if meta is not None else (1.0, 1.0, 1.0), image.shape[1:])

    def slices(self, image: np.ndarray, meta: ImageMeta | None) -> tuple[int, list[tuple[np.ndarray, ImageMeta]]]:
        """(axis, [(slice (C, a, b), its meta)]) of a volume for a 2D model, cut along `axis_for`'s axis."""
        spacing = meta.spacing[:3] if meta is not None else (1.0, 1.0, 1.0)
        axis = self.axis_for(image, meta)
        plane = [a for a in range(3) if a != axis]
        in_plane = tuple(spacing[a] for a in plane)
        affine = np.diag([*in_plane, 1.0, 1.0])
        views = []
        for index in range(image.shape[1 + axis]):
            cut = np.take(image, index, axis=1 + axis)  # (C, a, b)
            views.append((cut, ImageMeta(spacing=in_plane, affine=affine, modality=getattr(meta, "modality", "OT"))))
        return axis, views

    def to_card(self) -> dict:
        card = {
            "layout": "channel-first (C, H, W) or (C, D, H, W)",
            "spatial_dims": self.spatial_dims,
            "channels": self.channels,
            "channel_names": self.channel_names,
            "size": self.size if self.size is not None else self.patch,
            "patch": self.patch,
            "spacing_mm": self.spacing,
            "source_spacing_mm": self.source_spacing,
            "intensity": self.intensity.to_dict(),
        }
        if self.spatial_dims == 2:  # how a volume is read by this 2D model: slice by slice along this axis
            card["slice_axis"] = self.slice_axis  # None: the axis of coarsest spacing, chosen per volume
        if self.sliding:
            card["intensity_per_channel"] = True  # the mode runs on each channel alone; one mean and std for all
            card["inference"] = "sliding window, Gaussian blending, overlap 0.5; padded with each channel's minimum"
        else:
            card["inference"] = "whole image, resized to size" if self.size else "whole image"
        return card

    @classmethod
    def from_card(cls, card: dict) -> InputSpec:
        given, model = card["input"], card["model"]
        patch = given.get("patch")
        return cls(
            spatial_dims=int(given.get("spatial_dims", model["spatial_dims"])),
            channels=int(given.get("channels", model["in_channels"])),
            intensity=Intensity.from_dict(given["intensity"]),
            size=None if patch is not None else given.get("size"),
            patch=patch,
            spacing=given.get("spacing_mm"),
            channel_names=given.get("channel_names"),
            source_spacing=given.get("source_spacing_mm"),
            slice_axis=given.get("slice_axis"),
        )

    def batch(self, image: np.ndarray, meta: ImageMeta | None, *, where: str):
        """(int | None, (N, C, *spatial') tensor): the image prepared as one input, or, for a volume given to a 2D
        model, its slices along `slice_axis` as N inputs (with that axis)."""
        if not self.is_volume_for_slices(image):
            return None, self.prepare(image, meta, where=where)[None]
        axis, views = self.slices(image, meta)
        prepared = [self.prepare(cut, cut_meta, where=where) for cut, cut_meta in views]
        if isinstance(prepared[0], np.ndarray):  # the ONNX backend
            return axis, np.stack(prepared)
        import torch

        return axis, torch.stack(prepared)

    def fit(self, image: np.ndarray, *, where: str) -> np.ndarray:
        """The image with the model's dimensions and channels, or an error naming the file.

        A 2D image stored as a one-slice NIfTI, (C, X, Y, 1), counts as 2D; a gray picture saved as RGB (three
        equal channels) counts as one channel.
        """
        from medattn.data.readers import one_slice_as_2d

        image = one_slice_as_2d(image) if self.spatial_dims == 2 else image
        spatial = image.shape[1:]
        dims = image.ndim - 1
        if dims != self.spatial_dims:
            kind = "a 3D volume" if dims == 3 else "a 2D image"
            raise DataError(
                f"{where}: {kind} of shape {list(spatial)}, but the model is {self.spatial_dims}D "
                f"(trained on {self.spatial_dims}D {'volumes' if self.spatial_dims == 3 else 'images'})"
            )
        if image.shape[0] == 3 and self.channels == 1:
            if np.array_equal(image[0], image[1]) and np.array_equal(image[0], image[2]):
                image = image[:1]
            else:
                raise DataError(f"{where}: a colour image, but the model takes 1-channel (grayscale) input")
        if image.shape[0] != self.channels:
            raise DataError(f"{where}: {image.shape[0]} channel(s), but the model takes {self.channels}")
        return image

    def prepare(self, image: np.ndarray, meta: ImageMeta | None, *, where: str):
        """(C, *spatial') float32 tensor as the model saw in training, for one image as read from disk (an array
        under the ONNX backends, prepared by engine/numeric.py without torch)."""
        from medattn.engine.backend import uses_torch

        image = self.fit(image, where=where)
        spacing = meta.spacing[: self.spatial_dims] if meta is not None else [1.0] * self.spatial_dims
        if not uses_torch():
            from medattn.engine.numeric import prepare_array

            if not self.sliding:
                return prepare_array(image, self.intensity, self.size)
            return prepare_array(image, self.intensity, None, spacing=spacing, target=self.spacing)
        from medattn.data.tensors import prepare_image

        if not self.sliding:
            return prepare_image(image, self.intensity, self.size, where=where)[0]
        from medattn.data.resample import resample_image

        return resample_image(image, spacing, self.intensity, self.spacing)


def slice_axis(spacing, shape) -> int:
    """The axis a volume is cut along for a 2D model: the one with the coarsest spacing (how most scans are
    acquired, slice by slice), ties broken by the fewest voxels, then the last axis (NIfTI's usual slice axis)."""
    return min(range(3), key=lambda a: (-round(float(spacing[a]), 3), shape[a], -a))
