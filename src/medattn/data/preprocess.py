"""Intensity preprocessing per modality and resizing to the model's input.

The chosen recipe is an `Intensity` record stored in the model card, so `predict` applies exactly what
training applied. Modes:
- scale:  integer images divided by their type's maximum (8-bit to 0-1), the usual for X-ray, ultrasound, RGB;
- ct:     Hounsfield units clipped to a window [center - width/2, center + width/2], mapped to 0-1;
- mr:     z-score over the foreground (non-zero) voxels of each image;
- minmax: each image mapped to 0-1 between its 0.5th and 99.5th percentiles.
After the mode, the whole set is standardised with the training set's mean and standard deviation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from medattn.errors import ConfigError

MODES = ("scale", "ct", "mr", "minmax")
MODALITY_MODES = {
    "ct": "ct",
    "mr": "mr",
    "xray": "scale",
    "rgb": "scale",
    "ultrasound": "scale",
    "minmax": "minmax",
}
DEFAULT_CT_WINDOW = (40.0, 400.0)  # soft tissue


@dataclass
class Intensity:
    mode: str = "scale"
    scale: float = 1.0 / 255.0
    window: tuple[float, float] = DEFAULT_CT_WINDOW
    mean: float = 0.0
    std: float = 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "window": list(self.window)}

    @classmethod
    def from_dict(cls, raw: dict) -> Intensity:
        """From a model card; an unknown mode or a value that is not a finite number (a hand-edited card) is a
        ValueError rather than predictions on garbage."""
        made = cls(**{**raw, "window": tuple(raw.get("window", DEFAULT_CT_WINDOW))})
        numbers = [made.scale, *made.window, made.mean, made.std]
        finite = all(isinstance(v, int | float) and math.isfinite(v) for v in numbers)
        if made.mode not in MODES or len(made.window) != 2 or not finite or made.std <= 0:
            raise ValueError(f"intensity {raw!r}: expected a mode among {', '.join(MODES)}, finite numbers, std > 0")
        return made


def choose_intensity(
    modality: str, dtypes, *, window: list[float] | None = None, dicom_modality: str | None = None
) -> Intensity:
    """Pick the mode for a configured modality ("auto" looks at the DICOM modality and the pixel types).

    `dtypes` is the stored type of the training images (one, or every one seen): a set that mixes types (MSD
    Hippocampus stores some volumes as uint8 and others as float32) has no one type maximum to divide by, so
    "auto" maps each image between its own percentiles (minmax) rather than trusting the first file's type.
    """
    if modality not in (*MODALITY_MODES, "auto"):
        raise ConfigError(f"data.modality {modality!r} is not one of auto, {', '.join(MODALITY_MODES)}")
    kinds = {np.dtype(d) for d in (dtypes if isinstance(dtypes, list | tuple | set | frozenset) else [dtypes])}
    dtype = kinds.pop() if len(kinds) == 1 else np.dtype(np.float32)  # mixed types: treated as floats
    mode = MODALITY_MODES.get(modality)
    if mode is None:  # auto
        if dicom_modality == "CT":
            mode = "ct"
        elif dicom_modality == "MR":
            mode = "mr"
        elif dtype in (np.uint8, np.uint16):
            mode = "scale"
        else:
            mode = "minmax"
    if mode == "scale" and dtype.kind not in "ui":
        mode = "minmax"  # floats have no type maximum to divide by
    scale = 1.0 / float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
    return Intensity(mode=mode, scale=scale, window=tuple(window) if window else DEFAULT_CT_WINDOW)


def to_unit(image: np.ndarray, intensity: Intensity) -> np.ndarray:
    """Apply the modality mode to one image (C, *spatial); returns float32."""
    x = image.astype(np.float32, copy=False)
    if intensity.mode == "scale":
        return x * np.float32(intensity.scale)
    if intensity.mode == "ct":
        center, width = intensity.window
        low = center - width / 2
        return np.clip((x - low) / width, 0.0, 1.0).astype(np.float32, copy=False)
    if intensity.mode == "mr":
        foreground = x[x != 0]
        values = foreground if foreground.size > 10 else x.ravel()
        return ((x - float(values.mean())) / (float(values.std()) + 1e-6)).astype(np.float32, copy=False)
    low, high = (float(v) for v in np.percentile(x, [0.5, 99.5]))  # Python floats keep the result float32
    return np.clip((x - low) / (high - low + 1e-6), 0.0, 1.0).astype(np.float32, copy=False)


def resize(batch, size: list[int] | tuple[int, ...] | None):
    """Resize a float tensor (N, C, *spatial) to `size` with area/trilinear interpolation (images only)."""
    import torch.nn.functional as F

    if size is None or tuple(batch.shape[2:]) == tuple(size):
        return batch
    if len(size) != batch.ndim - 2:
        raise ConfigError(f"data.size {list(size)} has {len(size)} axes but the images have {batch.ndim - 2}")
    shrinking = all(s <= t for s, t in zip(size, batch.shape[2:], strict=True))
    mode = "area" if shrinking else ("bilinear" if batch.ndim == 4 else "trilinear")
    options = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(batch, size=tuple(size), mode=mode, **options)
