"""Everything the segmentation loop needs from the data: checked cases in memory, prepared as the card says.

Opening `data.path` (data/segmentation.py), carving val/test by case or patient, reading train and val with
every mask checked against its image, choosing the class count (declared, or the largest label + 1), the
intensity mode, the target spacing (`data.spacing`) and the patch (`data.patch`), and standardising with
the training voxels' mean and standard deviation. Cases are held in memory at the target spacing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from medattn.config import RunConfig
from medattn.data.preprocess import choose_intensity
from medattn.data.resample import resample_image, resample_mask, resampled_shape
from medattn.errors import ConfigError, DataError
from medattn.progress import track
from medattn.tasks.segment.cases import LoadedCase, check_labels, mask_values, read_case
from medattn.tasks.segment.inference import SegmentationPlan
from medattn.tasks.segment.sources import SegmentationSource, ensure_case_splits, open_segmentation

PATCH_CAP = {2: 128, 3: 48}  # auto patch: the median shape rounded to a multiple of 8, at most this per axis


@dataclass
class SegmentationData:
    source: SegmentationSource
    class_names: list[str]
    plan: SegmentationPlan
    train_x: list  # (C, *S) float32 tensors, standardised, at the plan's spacing
    train_y: list  # (*S) uint8 tensors
    val_x: list
    val_y: list
    val_spacing: list[tuple[float, ...]]  # mm of each val case as held (for distances)
    notes: list[str]
    source_spacing: list[float]  # median mm of the training cases as read
    clinical: object = None  # data/clinical.py's ClinicalSpec with data.clinical, and each case's vector:
    train_clinical: object = None  # (cases, F) float32
    val_clinical: object = None
    clinical_join: dict | None = None  # patients the table lacks, per split

    @property
    def spatial_dims(self) -> int:
        return self.plan.spatial_dims

    @property
    def in_channels(self) -> int:
        return self.plan.in_channels

    @property
    def num_classes(self) -> int:
        return self.plan.num_classes


def _read(cases, label: str, *, binary_255: bool = False) -> list[LoadedCase]:
    return [read_case(c, binary_255=binary_255) for c in track(cases, f"reading {label} cases")]


def _check_consistent(loaded: list[LoadedCase]) -> None:
    first = loaded[0]
    for item in loaded[1:]:
        if item.spatial_dims != first.spatial_dims or item.image.shape[0] != first.image.shape[0]:
            raise DataError(
                f"{item.case.images[0]}: {item.image.shape[0]} channel(s), {item.spatial_dims}D, but "
                f"{first.case.images[0]} has {first.image.shape[0]} channel(s), {first.spatial_dims}D: "
                "every case must have the same channels and dimensions"
            )


def _per_axis(value: list, dims: int, key: str) -> list:
    if len(value) == 1:
        return value * dims
    if len(value) != dims:
        raise ConfigError(f"{key} {value} has {len(value)} values but the images are {dims}D")
    return list(value)


def target_spacing(setting, spacings: list[tuple[float, ...]], dims: int) -> list[float] | None:
    """`data.spacing` made concrete: None (keep each image's grid) or mm per axis."""
    if setting == "none" or (setting == "auto" and dims == 2):
        return None
    if isinstance(setting, str):  # auto in 3D, or median
        return [float(statistics.median(s[axis] for s in spacings)) for axis in range(dims)]
    return [float(s) for s in _per_axis(list(setting), dims, "data.spacing")]


def auto_patch(shapes: list[tuple[int, ...]], dims: int) -> list[int]:
    median = [statistics.median(s[axis] for s in shapes) for axis in range(dims)]
    return [int(min(PATCH_CAP[dims], max(8, 8 * round(m / 8)))) for m in median]


def _classes(source: SegmentationSource, loaded: list[LoadedCase]) -> tuple[list[str], bool, list[str]]:
    """Class names, whether masks are 0/255 pictures, notes; every mask's labels checked."""
    values, notes = mask_values(loaded), []
    declared = source.class_names
    binary_255 = values <= {0, 255} and 255 in values and (declared is None or len(declared) == 2)
    if binary_255:
        for item in loaded:
            item.mask = np.where(item.mask == 255, 1, item.mask)
        values = (values - {255}) | {1}
        notes.append("masks hold 0/255: read as background (0) and foreground (1)")
    if declared is None:
        top = max(values)
        if top == 0:
            raise DataError(f"{source.path}: every training and validation mask is empty (all 0): nothing to learn")
        declared = (
            ["background", "foreground"] if top == 1 else ["background", *(f"class_{k}" for k in range(1, top + 1))]
        )
        notes.append(f"{len(declared)} classes inferred from the masks' largest label ({top})")
    for item in loaded:
        check_labels(item, len(declared), declared)
    return list(declared), binary_255, notes


def open_split(config: RunConfig) -> SegmentationSource:
    """config.data.path opened, with val and test carved by case (or patient) as training carves them."""
    data = config.data
    source = open_segmentation(data.path, class_names=data.class_names)
    source.notes += ensure_case_splits(
        source, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=config.train.seed
    )
    return source


def load_segmentation_data(config: RunConfig, source: SegmentationSource | None = None) -> SegmentationData:
    data = config.data
    source = open_split(config) if source is None else source
    notes = list(source.notes)
    if not source.splits.get("val"):
        raise DataError(f"{data.path}: no validation cases and data.val_fraction is 0: the best epoch needs them")
    train, val = _read(source.splits["train"], "train"), _read(source.splits["val"], "validation")
    _check_consistent(train + val)
    class_names, binary_255, class_notes = _classes(source, train + val)
    first = train[0]
    dims = first.spatial_dims
    wanted = data.modality if data.modality != "auto" else source.modality
    dtypes = sorted({str(item.image.dtype) for item in train})  # every training case's, not the first file's
    intensity = choose_intensity(wanted, dtypes, window=data.window, dicom_modality=first.meta.modality)
    if len(dtypes) > 1:
        notes.append(f"training images are stored as {', '.join(dtypes)}: intensity mode {intensity.mode}")
    spacings = [tuple(item.meta.spacing[:dims]) for item in train]
    spacing = target_spacing(data.spacing or "auto", spacings, dims)
    shapes = [resampled_shape(item.mask.shape, item.meta.spacing[:dims], spacing) for item in train]
    patch = _per_axis(list(data.patch), dims, "data.patch") if data.patch else auto_patch(shapes, dims)
    train_x = [resample_image(item.image, item.meta.spacing[:dims], intensity, spacing) for item in train]
    train_y = [resample_mask(item.mask, item.meta.spacing[:dims], spacing) for item in train]
    voxels = sum(x[0].numel() for x in train_x)
    mean = sum(float(x.double().sum()) for x in train_x) / (voxels * first.image.shape[0])
    var = sum(float(((x.double() - mean) ** 2).sum()) for x in train_x) / (voxels * first.image.shape[0])
    intensity.mean, intensity.std = mean, max(var**0.5, 1e-6)
    train_x = [((x - intensity.mean) / intensity.std).contiguous() for x in train_x]
    source_spacing = [float(statistics.median(s[a] for s in spacings)) for a in range(dims)]
    plan = SegmentationPlan(
        channel_names=source.channel_names,
        source_spacing=source_spacing,
        spatial_dims=dims,
        in_channels=int(first.image.shape[0]),
        num_classes=len(class_names),
        patch=patch,
        spacing=spacing,
        intensity=intensity,
        binary_255=binary_255,
    )
    val_x = [resample_image(item.image, item.meta.spacing[:dims], intensity, spacing) for item in val]
    val_y = [resample_mask(item.mask, item.meta.spacing[:dims], spacing) for item in val]
    val_spacing = [tuple(spacing) if spacing else tuple(item.meta.spacing[:dims]) for item in val]
    seg = SegmentationData(
        source, class_names, plan, train_x, train_y, val_x, val_y, val_spacing, notes + class_notes, source_spacing
    )
    if data.clinical:  # each case's patient's clinical vector, FiLM-ing the bottleneck (models/clinical.py)
        from medattn.data.clinical_images import fit_patients

        ids = {name: [c.patient_id for c in source.splits[name]] for name in ("train", "val")}
        seg.clinical, vectors, seg.clinical_join = fit_patients(config, data.path, ids)
        seg.train_clinical, seg.val_clinical = vectors["train"], vectors["val"]
        seg.notes += seg.clinical_join["notes"]
    return seg
