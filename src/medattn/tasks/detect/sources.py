"""Detection data sets: images with boxes, from Pascal VOC, COCO, YOLO, a CSV, or MONAI's detection JSON.

Every layout opens as a `DetectionSource`: class names and, per split, `Annotated` images, each with its boxes in
pixel (voxel) coordinates of the image array, whatever convention the file used (layers/boxes.py: [lo..., hi...]
along the array's spatial axes, pixel i spanning [i, i + 1)). An image without boxes is a negative image.

- Pascal VOC: a folder with `Annotations/*.xml` and `JPEGImages/`; `ImageSets/Main/{train,val,test}.txt` (or
  trainval.txt) are the official split (formats.py);
- COCO: a JSON with images, annotations and categories (crowd regions are left out, with a note) (formats.py);
- YOLO: a folder with `images/` and `labels/*.txt` (class cx cy w h, normalised; a polygon gives its extent),
  optionally train/val/test below each (or train/ valid/ test/ each holding both), and `classes.txt` or a
  data.yaml naming the classes (formats.py);
- CSV: `path,x1,y1,x2,y2,label[,patient_id][,split]`, 3D with `z1,z2`; a row with empty box fields, or an image
  in no row, is a negative image (tables.py);
- MONAI's detection JSON: `training` / `validation` / `test` lists of {image, box, label}; the box mode
  (`--box-format cccwhd | xyzxyz`) and its space (`--box-space voxel | world | world_lps`) are stated (tables.py).

Axes: in 2D, x runs along the image's columns (the last array axis) and y along its rows, as every picture
format has it; in 3D, x, y, z index the array axes in order (NIfTI's i, j, k), as MONAI does. Missing val/test
splits are carved with a seed, by patient when every image has an id, stratified by whether it holds boxes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medattn.config import BOX_FORMATS, BOX_SPACES  # noqa: F401  (the MONAI box conventions, checked there)
from medattn.data.manifest import csv_header
from medattn.data.splits import carve_splits
from medattn.errors import DataError

CSV_BOX_COLUMNS = {2: ("x1", "y1", "x2", "y2"), 3: ("x1", "y1", "z1", "x2", "y2", "z2")}


@dataclass
class Annotated:
    """One image and its boxes."""

    image: str  # a file, or a folder holding a DICOM series
    boxes: np.ndarray  # (N, 2D) float32, array axes, pixel coordinates (see the module docstring)
    labels: np.ndarray  # (N,) int64 class index; -1 for a name outside the declared classes
    where: str  # the annotation it came from (a file, a CSV line), for errors
    patient_id: str | None = None
    names: list[str] = field(default_factory=list)  # the class name written beside each box (for errors)
    origins: list[str] = field(default_factory=list)  # where each box is written (a CSV line), when known

    def origin(self, k: int) -> str:
        return self.origins[k] if k < len(self.origins) else self.where

    @property
    def spatial_dims(self) -> int:
        return self.boxes.shape[1] // 2


@dataclass
class DetectionSource:
    path: str
    kind: str  # voc | coco | yolo | csv | monai
    class_names: list[str]
    splits: dict[str, list[Annotated]]
    modality: str = "auto"
    notes: list[str] = field(default_factory=list)

    @property
    def spatial_dims(self) -> int:
        return self.splits["train"][0].spatial_dims


def _json_kind(path: Path) -> str | None:
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(spec, dict):
        return None
    if {"images", "annotations"} <= set(spec):
        return "coco"
    entries = [e for key in ("training", "validation", "test") for e in spec.get(key) or [] if isinstance(e, dict)]
    return "monai" if entries and all("box" in e for e in entries) else None


def detection_kind(path: str | Path) -> str | None:
    """voc, coco, yolo, csv or monai for the layouts above; None for anything else."""
    from medattn.tasks.detect.formats import is_voc, is_yolo

    path = Path(path)
    if path.is_dir():
        return "voc" if is_voc(path) else "yolo" if is_yolo(path) else None
    if path.suffix.lower() == ".json" and path.is_file():
        return _json_kind(path)
    if path.suffix.lower() == ".csv" and path.is_file():
        header = set(csv_header(path))
        return "csv" if {"path", "label", *CSV_BOX_COLUMNS[2]} <= header else None
    return None


def open_detection(
    path: str | Path,
    *,
    class_names: list[str] | None = None,
    box_format: str | None = None,
    box_space: str | None = None,
    drop_bad_boxes: bool = False,
) -> DetectionSource:
    """The data set at `path` with its declared splits; boxes with no area or an unknown class are errors naming
    their annotation, or dropped with a count (`drop_bad_boxes`). Boxes outside the image are checked when the
    image is read (checks.py)."""
    from medattn.tasks.detect import formats, tables
    from medattn.tasks.detect.checks import check_annotations

    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    kind = detection_kind(path)
    if kind != "monai" and (box_format is not None or box_space is not None):
        raise DataError(f"{path}: --box-format and --box-space describe MONAI detection JSON boxes; this is {kind}")
    if kind == "voc":
        source = formats.open_voc(path, class_names)
    elif kind == "coco":
        source = formats.open_coco(path, class_names)
    elif kind == "yolo":
        source = formats.open_yolo(path, class_names)
    elif kind == "csv":
        source = tables.open_csv(path, class_names)
    elif kind == "monai":
        source = tables.open_monai(path, class_names, box_format=box_format, box_space=box_space)
    else:
        raise DataError(
            f"{path}: not detection data (expected a Pascal VOC folder, a COCO or MONAI detection JSON, a YOLO "
            "folder with images/ and labels/, or a CSV path,x1,y1,x2,y2,label)"
        )
    if not source.splits.get("train"):
        raise DataError(f"{path}: no training images")
    source.notes += check_annotations(source, drop=drop_bad_boxes)
    return source


def file_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 2D) boxes in the order files write them (2D: x1, y1, x2, y2 with x along columns) from array-axis boxes;
    3D boxes are in array-axis order already."""
    return boxes[:, [1, 0, 3, 2]] if boxes.shape[1] == 4 else boxes


def open_configured(data, *, drop_bad_boxes: bool | None = None) -> DetectionSource:
    """`open_detection` of data.path with the data config's options (`drop_bad_boxes` overrides its own)."""
    return open_detection(
        data.path,
        class_names=data.class_names,
        box_format=data.box_format,
        box_space=data.box_space,
        drop_bad_boxes=data.drop_bad_boxes if drop_bad_boxes is None else drop_bad_boxes,
    )


def has_boxes(items: list[Annotated]) -> np.ndarray | None:
    """(N,) 1 where an image holds boxes: the strata of carved splits, or None when one kind is too rare."""
    strata = np.asarray([int(len(item.boxes) > 0) for item in items])
    counts = np.bincount(strata, minlength=2)
    return strata if counts.min() >= 2 else None


def patients(items: list[Annotated]) -> list[str] | None:
    return [item.patient_id for item in items] if all(item.patient_id for item in items) else None


def ensure_splits(source: DetectionSource, *, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Carve missing test and val splits from train, by patient when every image has an id."""
    return carve_splits(
        source.splits,
        strata=has_boxes,
        groups=patients,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        where=source.path,
    )
