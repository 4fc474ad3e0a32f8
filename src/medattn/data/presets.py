"""Augmentation presets per imaging modality: `data.augment: xray` (or `--augment xray`) instead of a list.

A preset is a list of operations for `Augment` (data/augment.py): the batched built-ins for geometry and
the cheap intensity jitter, plus a few MONAI transforms, run per sample, for the artefacts of one modality.
Those cost about 0.3 ms per 28x28 image they touch (more in 3D), so their probabilities stay at 0.1-0.3.
Images arrive standardised (zero mean, unit variance over the training set); `Augment` hands each MONAI
transform the image shifted so its darkest value is 0, so multiplicative artefacts act on tissue, not
around the mean. `RunConfig.resolved` writes the chosen list into the run's config.yaml, so a run records
the exact transforms it used, and `auto` picks the preset of the data's modality (`default` when unknown).

Flips. Left-right is the last spatial axis ((row, column) pictures, DICOM slices); only `rgb` flips every
axis. A NIfTI volume stored as (X, Y, Z) has left-right first: give such data an explicit list.

- default:    the list every run used before presets (left-right flip, affine); benchmarks depend on it.
- none:       no augmentation.
- xray:       radiographs are projections taken head-up, so no vertical flip; left-right flips as in
              CheXNet (it mirrors the heart: use a list without it when laterality is the label). Small
              rotations and scales (patient positioning), exposure and detector response (intensity,
              gamma via monai.RandAdjustContrast) and a little quantum noise.
- ct:         Hounsfield units are calibrated and sizes in mm carry meaning (a hyperplastic adrenal is a
              larger one), so no intensity scale or shift and only +-5% scaling; the bilinear affine never
              leaves the windowed range. A mild gamma (another window), noise (dose) and a rare blur
              (a softer reconstruction kernel, monai.RandGaussianSmooth).
- mr:         intensities have no units, so the strongest intensity jitter; the receive-coil bias field
              (monai.RandBiasField), truncation ringing (monai.RandGibbsNoise) and gamma. Spike noise
              (RandKSpaceSpikeNoise) is left out: at these sizes it swamps the image.
- ultrasound: the transducer is at the top, so left-right flips only and small shifts; gain (intensity),
              log compression (gamma), speckle (multiplicative noise, built-in) and a rare blur (a lower
              transducer frequency).
- rgb:        microscopy, dermatology and fundus pictures have no up or down: flips on every axis and
              rotations to 30 degrees; stain and white-balance differences as per-channel scale and shift
              (monai.RandScaleIntensity / RandShiftIntensity, channel_wise), gamma and, rarely, a histogram
              shift (monai.RandHistogramShift).
"""

from __future__ import annotations

import difflib
from typing import Any

from medattn.config import default_augment
from medattn.errors import ConfigError

MODALITY_PRESETS = ("xray", "ct", "mr", "ultrasound", "rgb")
PRESETS = ("none", "default", *MODALITY_PRESETS)
CHOICES = (*PRESETS, "auto")

Spec = dict[str, Any]


def _affine(prob: float, rotate_deg: float, scale: float, translate: float) -> Spec:
    return {"name": "affine", "prob": prob, "rotate_deg": rotate_deg, "scale": scale, "translate": translate}


def _gamma(prob: float, low: float, high: float) -> Spec:
    return {"name": "monai.RandAdjustContrast", "prob": prob, "gamma": [low, high]}


def _blur(prob: float, high: float) -> Spec:
    sigma = [0.25, high]
    return {"name": "monai.RandGaussianSmooth", "prob": prob, "sigma_x": sigma, "sigma_y": sigma, "sigma_z": sigma}


def _xray(lr: list[int]) -> list[Spec]:
    return [
        {"name": "flip", "prob": 0.5, "axes": lr},
        _affine(0.8, 7.0, 0.1, 0.05),
        {"name": "intensity", "prob": 0.5, "scale": 0.1, "shift": 0.1},
        _gamma(0.3, 0.7, 1.5),
        {"name": "noise", "prob": 0.2, "std": 0.05},
    ]


def _ct(lr: list[int]) -> list[Spec]:
    return [
        {"name": "flip", "prob": 0.5, "axes": lr},
        _affine(0.7, 10.0, 0.05, 0.05),
        _gamma(0.2, 0.8, 1.25),
        {"name": "noise", "prob": 0.3, "std": 0.05},
        _blur(0.1, 0.75),
    ]


def _mr(lr: list[int]) -> list[Spec]:
    return [
        {"name": "flip", "prob": 0.5, "axes": lr},
        _affine(0.8, 10.0, 0.1, 0.05),
        {"name": "intensity", "prob": 0.5, "scale": 0.15, "shift": 0.1},
        {"name": "monai.RandBiasField", "prob": 0.2, "degree": 3, "coeff_range": [0.0, 0.1]},
        {"name": "monai.RandGibbsNoise", "prob": 0.1, "alpha": [0.0, 0.5]},
        _gamma(0.2, 0.7, 1.5),
    ]


def _ultrasound(lr: list[int]) -> list[Spec]:
    return [
        {"name": "flip", "prob": 0.5, "axes": lr},
        _affine(0.7, 10.0, 0.1, 0.03),
        {"name": "intensity", "prob": 0.5, "scale": 0.15, "shift": 0.1},
        {"name": "speckle", "prob": 0.3, "std": 0.05},
        _gamma(0.2, 0.7, 1.4),
        _blur(0.1, 0.75),
    ]


def _rgb(every: list[int]) -> list[Spec]:
    return [
        {"name": "flip", "prob": 0.5, "axes": every},
        _affine(0.8, 30.0, 0.1, 0.05),
        {"name": "monai.RandScaleIntensity", "prob": 0.3, "factors": 0.1, "channel_wise": True},
        {"name": "monai.RandShiftIntensity", "prob": 0.3, "offsets": 0.1, "channel_wise": True},
        _gamma(0.2, 0.8, 1.25),
        {"name": "monai.RandHistogramShift", "prob": 0.1, "num_control_points": [5, 10]},
    ]


def preset(name: str, *, spatial_dims: int) -> list[Spec]:
    """The operations of preset NAME for 2D or 3D images, every option written out."""
    if spatial_dims not in (2, 3):
        raise ConfigError(f"data.augment: presets are for 2D or 3D images, not {spatial_dims}D")
    if name == "none":
        return []
    if name == "default":
        return default_augment()
    build = {"xray": _xray, "ct": _ct, "mr": _mr, "ultrasound": _ultrasound}.get(name)
    if build is not None:
        return build([-1])
    if name == "rgb":
        return _rgb(list(range(-spatial_dims, 0)))
    raise ConfigError(_unknown(name))


def resolve_augment(value: str | list[Spec], *, spatial_dims: int, modality: str = "auto") -> list[Spec]:
    """The list of operations meant by `data.augment`: a copy of a list, or a preset (`auto`: MODALITY's)."""
    check_augment(value)
    if isinstance(value, list):
        return [dict(spec) for spec in value]
    if value == "auto":
        value = modality if modality in MODALITY_PRESETS else "default"
    return preset(value, spatial_dims=spatial_dims)


def check_augment(value: Any) -> None:
    """Fail on anything `data.augment` cannot mean: an unknown preset, an unknown operation or key."""
    from medattn.data.augment import check_spec

    if isinstance(value, str):
        if value not in CHOICES:
            raise ConfigError(_unknown(value))
    elif isinstance(value, list):
        for spec in value:
            check_spec(spec)
    else:
        raise ConfigError(f"data.augment: expected a preset name or a list of operations, found {value!r}")


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, CHOICES, n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f"data.augment: unknown preset {name!r}{hint}; valid: {', '.join(CHOICES)}, or a list of operations"
