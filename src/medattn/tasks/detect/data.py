"""Everything the detection loop needs from the data: train and val images in memory, prepared as the card says.

Opening `data.path` (sources.py), carving val/test by image or patient, reading every train and val image with
its boxes checked against it (checks.py), choosing the intensity recipe from every training image's stored type,
the geometry (plan.py: native patches or a letterbox) and the predicting levels from the training boxes, and
standardising with the training pixels' mean and standard deviation. Training images are held as float16.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

import numpy as np

from medattn.config import RunConfig
from medattn.data.preprocess import choose_intensity
from medattn.errors import DataError
from medattn.models.detector import backbone_strides
from medattn.progress import track
from medattn.tasks.detect.checks import check_inside, dropped_note
from medattn.tasks.detect.plan import DetectionPlan, choose_geometry, choose_strides, tile_overlap
from medattn.tasks.detect.sources import Annotated, DetectionSource, ensure_splits, open_configured


@dataclass
class DetectionData:
    source: DetectionSource
    plan: DetectionPlan
    train_x: list  # (C, *S) float16 tensors, standardised, as the model takes them
    train_boxes: list  # (N, 2D) float32 tensors in those pixels
    train_labels: list  # (N,) int64 tensors
    val_x: list
    val_boxes: list
    val_labels: list
    notes: list[str]

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names


def open_split(config: RunConfig) -> DetectionSource:
    """config.data.path opened, with val and test carved as training carves them."""
    data = config.data
    source = open_configured(data)
    source.notes += ensure_splits(
        source, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=config.train.seed
    )
    return source


def read_item(item: Annotated, *, drop: bool):
    """(image (C, *S) as stored, meta, boxes dropped per reason): the image, its boxes checked against it."""
    from medattn.data.meta import require_finite
    from medattn.data.readers import one_slice_as_2d, read_image

    image, meta = read_image(item.image)
    image = one_slice_as_2d(image)
    require_finite(image, item.image)
    if image.ndim - 1 != item.spatial_dims:
        raise DataError(f"{item.where}: {item.spatial_dims}D boxes for {item.image}, a {image.ndim - 1}D image")
    return image, meta, check_inside(item, image.shape[1:], drop=drop)


def _read_all(items: list[Annotated], label: str, *, drop: bool) -> tuple[list, Counter]:
    dropped: Counter = Counter()
    loaded = []
    for item in track(items, f"reading {label} images"):
        image, meta, lost = read_item(item, drop=drop)
        dropped += lost
        loaded.append((image, meta))
    first = loaded[0][0] if loaded else None
    channels = {image.shape[0] for image, _ in loaded}
    if channels == {1, 3}:  # gray pictures among colour ones (a microscope's exports): gray in every channel
        loaded = [(np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image, meta) for image, meta in loaded]
        first = loaded[0][0]
    for (image, _), item in zip(loaded, items, strict=True):
        if image.shape[0] != first.shape[0] or image.ndim != first.ndim:
            raise DataError(
                f"{item.image}: {image.shape[0]} channel(s), {image.ndim - 1}D, but {items[0].image} has "
                f"{first.shape[0]}, {first.ndim - 1}D: every image must have the same channels and dimensions"
            )
    return loaded, dropped


def _sides(items: list[Annotated], scales) -> np.ndarray:
    rows = [
        (item.boxes[:, item.spatial_dims :] - item.boxes[:, : item.spatial_dims]) * s
        for item, s in zip(items, scales, strict=True)
    ]
    return np.concatenate(rows) if rows else np.zeros((0, 2))


def load_detection_data(config: RunConfig, source: DetectionSource | None = None) -> DetectionData:
    import torch

    data = config.data
    source = open_split(config) if source is None else source
    notes = list(source.notes)
    if not source.splits.get("val"):
        raise DataError(f"{data.path}: no validation images and data.val_fraction is 0: the best epoch needs them")
    train_items, val_items = source.splits["train"], source.splits["val"]
    train, dropped = _read_all(train_items, "train", drop=data.drop_bad_boxes)
    val, dropped_val = _read_all(val_items, "validation", drop=data.drop_bad_boxes)
    notes += dropped_note(dropped + dropped_val, "outside their images (train and val)")
    if not any(len(item.boxes) for item in val_items):
        raise DataError(f"{data.path}: the validation images hold no boxes: the best epoch is chosen on their mAP")
    if not any(len(item.boxes) for item in train_items):
        raise DataError(f"{data.path}: the training images hold no boxes: nothing to learn")
    first, meta = train[0]
    dims = first.ndim - 1
    dtypes = sorted({str(image.dtype) for image, _ in train})
    wanted = data.modality if data.modality != "auto" else source.modality
    intensity = choose_intensity(wanted, dtypes, window=data.window, dicom_modality=meta.modality)
    if len(dtypes) > 1:
        notes.append(f"training images are stored as {', '.join(dtypes)}: intensity mode {intensity.mode}")
    shapes = [image.shape[1:] for image, _ in train]
    geometry = choose_geometry(shapes, _sides(train_items, [1.0] * len(train_items)), patch=data.patch, size=data.size)
    plan = DetectionPlan(
        spatial_dims=dims,
        channels=int(first.shape[0]),
        intensity=intensity,
        size=geometry["size"],
        patch=geometry["patch"],
        window=geometry["window"],
        source_spacing=[float(statistics.median(m.spacing[a] for _, m in train)) for a in range(dims)],
    )
    units, scales = [], []
    total, square, count = 0.0, 0.0, 0
    for (image, _), item in zip(train, train_items, strict=True):
        x, scale = plan.prepare(image, where=item.image, standardise=False)  # the statistics of what the model sees
        values = x.double()
        total, square, count = total + float(values.sum()), square + float(values.square().sum()), count + x.numel()
        units.append(x.half())  # held as float16 from here: a few hundred 640 x 480 pictures take 0.5 GB
        scales.append(scale)
    intensity.mean = total / count
    intensity.std = max((square / count - intensity.mean**2) ** 0.5, 1e-6)
    sides = _sides(train_items, scales)
    plan.strides = choose_strides(sides, dims, backbone_strides(dims, config.model.options.get("widths")))
    if plan.native:
        plan.overlap = tile_overlap(sides, plan.window)

    def boxes(items, item_scales):
        return (
            [torch.from_numpy(item.boxes * s).float() for item, s in zip(items, item_scales, strict=True)],
            [torch.from_numpy(item.labels).long() for item in items],
        )

    train_x = [((x.float() - intensity.mean) / intensity.std).half() for x in units]
    train_boxes, train_labels = boxes(train_items, scales)
    val_x, val_scales = [], []
    for (image, _), item in zip(val, val_items, strict=True):
        x, scale = plan.prepare(image, where=item.image)
        val_x.append(x)
        val_scales.append(scale)
    val_boxes, val_labels = boxes(val_items, val_scales)
    return DetectionData(source, plan, train_x, train_boxes, train_labels, val_x, val_boxes, val_labels, notes)
