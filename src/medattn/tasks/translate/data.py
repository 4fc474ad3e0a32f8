"""Translation data in memory: each pair read (`read_pair`), the source prepared as every task prepares an input
(the intensity mode, then the training set's mean and standard deviation: engine/inputs.py can redo it at
prediction), the target standardised per channel with the training targets' mean and standard deviation (a
linear map, so predictions go back to the target's stored intensities exactly), and the training patch.

The patch is each axis's median size, capped at MAX_PATCH (per dimension) and rounded down to a multiple of 16
(four U-Net levels halve it three times); images smaller than it are padded when cropped.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from medattn.config import RunConfig
from medattn.data.preprocess import Intensity
from medattn.errors import DataError
from medattn.tasks.translate.sources import Pair, PairSource

MAX_PATCH = {2: 64, 3: 64}  # 2D: four times cheaper than 128, and a 70x70 discriminator still fits
MULTIPLE = 16
SCALE_SPREAD = 50  # training targets whose peaks differ more than this are noted as of different scales


def read_pair(source: PairSource, pair: Pair) -> tuple[np.ndarray, np.ndarray, object, str]:
    """(source (Cs, *S), target (Ct, *S), meta of the image or None, where) as stored (a degraded source as
    float32)."""
    from medattn.data.degrade import degrade
    from medattn.data.readers import one_slice_as_2d, read_image

    meta = None
    if pair.row is not None:
        where = f"{source.path} [{pair.name}]"
        image = source.arrays["source"][pair.row]
        target = None if source.arrays["target"] is None else source.arrays["target"][pair.row]
    else:
        where = pair.source[0]
        parts = []
        for file in pair.source:
            array, meta = read_image(file)
            parts.append(one_slice_as_2d(array))
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise DataError(f"{where}: the source files of {pair.name} differ in shape ({sorted(shapes)})")
        image = np.concatenate(parts) if len(parts) > 1 else parts[0]
        target = None
        if pair.target is not None:
            target, meta = read_image(pair.target)
            target = one_slice_as_2d(target)
    if source.source_channels is not None:
        wanted = [*source.source_channels, *source.target_channels]
        if max(wanted) >= image.shape[0]:
            raise DataError(f"{where}: {image.shape[0]} channel(s), but channels {sorted(set(wanted))} are asked for")
        image, target = image[source.source_channels], image[source.target_channels]
    elif source.degrade is not None:
        image, target = degrade(image, source.degrade, seed=zlib.crc32(pair.name.encode())), image
    if target is None:
        raise DataError(f"{where}: no target for {pair.name}")
    if image.shape[1:] != target.shape[1:]:
        raise DataError(
            f"{where}: source {list(image.shape[1:])} and target {list(target.shape[1:])} differ in shape; "
            "translation keeps the grid (resample one onto the other first)"
        )
    return image, target, meta, where


@dataclass
class TargetScale:
    """Per-channel linear map of the target: standardised = (stored - mean) / std; `low`, `high` bound the
    training targets as stored (predictions are clipped to them), `data_range` is what PSNR and SSIM use."""

    mean: list[float]
    std: list[float]
    low: float
    high: float
    data_range: float
    dtype: str
    spatial_dims: int

    def forward(self, y):  # (..., C, *S) stored -> standardised
        return (y - _as(y, self.mean, self._shape)) / _as(y, self.std, self._shape)

    def inverse(self, y):  # (..., C, *S) standardised -> stored intensities, clipped to the training range
        return (y * _as(y, self.std, self._shape) + _as(y, self.mean, self._shape)).clip(self.low, self.high)

    @property
    def _shape(self) -> tuple[int, ...]:  # broadcasts over (..., C, *S)
        return (len(self.mean), *[1] * self.spatial_dims)

    def to_card(self) -> dict:
        return {k: getattr(self, k) for k in ("mean", "std", "low", "high", "data_range", "dtype", "spatial_dims")}

    @classmethod
    def from_card(cls, card: dict) -> TargetScale:
        return cls(**card)


def _as(like, values, shape):
    import torch

    if torch.is_tensor(like):
        return torch.tensor(values, dtype=like.dtype).reshape(shape)
    return np.asarray(values, dtype=like.dtype).reshape(shape)


@dataclass
class TranslationData:
    source: PairSource
    spatial_dims: int
    in_channels: int
    out_channels: int
    intensity: Intensity
    scale: TargetScale
    patch: list[int]
    train_x: list  # (Cs, *S) float32 tensors, standardised
    train_y: list  # (Ct, *S) float32 tensors, standardised
    val_x: list
    val_y: list
    val_names: list[str]
    source_dtype: str
    source_spacing: list[float] | None
    notes: list[str] = field(default_factory=list)


def plan_patch(shapes: list[tuple[int, ...]], spatial_dims: int, given: list[int] | None) -> list[int]:
    """The training patch: the one given (one value for every axis, or one per axis), else from the median size."""
    if given is not None:
        patch = list(given) * spatial_dims if len(given) == 1 else list(given)
        if len(patch) != spatial_dims:
            raise DataError(f"data.patch {given}: {len(given)} values for {spatial_dims}D images")
        return patch
    median = np.median(np.asarray(shapes), axis=0)
    return [max(MULTIPLE, int(min(m, MAX_PATCH[spatial_dims])) // MULTIPLE * MULTIPLE) for m in median]


def load_translation_data(config: RunConfig, source: PairSource, *, progress=iter) -> TranslationData:
    import torch

    from medattn.data.preprocess import choose_intensity
    from medattn.data.resample import unit_image
    from medattn.data.tensors import fit_standardisation

    loaded = {}
    dtypes, spacing = set(), None
    for split in ("train", "val"):
        rows = []
        for pair in progress(source.splits.get(split, [])):
            x, y, meta, where = read_pair(source, pair)
            if not np.isfinite(x).all() or not np.isfinite(y).all():
                raise DataError(f"{where}: the image holds values that are not finite (NaN or infinity)")
            rows.append((pair.name, x, y))
            dtypes.add(str(x.dtype))
            if spacing is None and meta is not None:
                spacing = [float(s) for s in meta.spacing]
        loaded[split] = rows
    if not loaded["val"]:
        raise DataError(f"{source.path}: no validation pairs (the best epoch is chosen on them)")
    first = loaded["train"][0]
    dims, in_channels, out_channels = first[1].ndim - 1, first[1].shape[0], first[2].shape[0]
    for name, x, y in loaded["train"] + loaded["val"]:
        if x.ndim - 1 != dims or x.shape[0] != in_channels or y.shape[0] != out_channels:
            raise DataError(
                f"{source.path} [{name}]: {x.ndim - 1}D with {x.shape[0]} source and {y.shape[0]} target channels, "
                f"but the first pair is {dims}D with {in_channels} and {out_channels}"
            )
    if dims not in (2, 3):
        raise DataError(f"{source.path}: images of {dims} spatial axes; translation takes 2D or 3D")
    stored = sorted(dtypes)[0] if len(dtypes) == 1 else "float32"
    modality = config.data.modality if config.data.modality != "auto" else source.modality
    intensity = choose_intensity(modality, sorted(dtypes))
    units = [torch.from_numpy(unit_image(x, intensity)) for _, x, _ in loaded["train"]]
    intensity = fit_standardisation(torch.cat([u.flatten() for u in units]), intensity)
    targets = np.concatenate([y.reshape(out_channels, -1).astype(np.float64) for _, _, y in loaded["train"]], axis=1)
    low, high = float(targets.min()), float(targets.max())
    notes = list(source.notes)
    peaks = [float(np.abs(y).max()) for _, _, y in loaded["train"]]
    if min(peaks) > 0 and max(peaks) / min(peaks) > SCALE_SPREAD:
        notes.append(
            f"training targets peak between {min(peaks):.4g} and {max(peaks):.4g}: one standardisation and one data "
            "range fit images of such different intensity scales poorly; translate sets that share one scale"
        )
    if high <= low:
        raise DataError(f"{source.path}: every training target holds one value ({low}): nothing to learn")
    given = config.data.target_range
    scale = TargetScale(
        mean=[float(v) for v in targets.mean(axis=1)],
        std=[max(float(v), 1e-6) for v in targets.std(axis=1)],
        low=low,
        high=high,
        data_range=float(given) if given is not None else high - low,
        dtype=str(loaded["train"][0][2].dtype),
        spatial_dims=dims,
    )

    def tensors(split):
        xs = [(torch.from_numpy(unit_image(x, intensity)) - intensity.mean) / intensity.std for _, x, _ in split]
        ys = [scale.forward(torch.from_numpy(y.astype(np.float32))) for _, _, y in split]
        return [x.float().contiguous() for x in xs], [y.float().contiguous() for y in ys]

    train_x, train_y = tensors(loaded["train"])
    val_x, val_y = tensors(loaded["val"])
    patch = plan_patch([tuple(x.shape[1:]) for x in train_x], dims, config.data.patch)
    return TranslationData(
        source=source,
        spatial_dims=dims,
        in_channels=in_channels,
        out_channels=out_channels,
        intensity=intensity,
        scale=scale,
        patch=patch,
        train_x=train_x,
        train_y=train_y,
        val_x=val_x,
        val_y=val_y,
        val_names=[name for name, _, _ in loaded["val"]],
        source_dtype=stored,
        source_spacing=spacing,
        notes=notes,
    )
