"""Detection data listed in a table: a CSV of boxes (2D or 3D), or MONAI's detection JSON (2D or 3D).

CSV: `path,x1,y1,x2,y2,label[,patient_id][,split]` (3D adds z1, z2), one row per box, pixel (voxel) corners with
x2, y2, z2 the far edges; a row whose box fields are empty lists a negative image. MONAI: `training`,
`validation` and `test` lists of {"image", "box": [[...], ...], "label": [...]}, boxes as `xyzxyz` (corners) or
`cccwhd` (centre, size), in voxels or in world millimetres (RAS+ as nibabel reads the image, or LPS as ITK and
DICOM write it), mapped to voxels through the image's affine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medattn.data.manifest import SPLITS, read_manifest
from medattn.errors import ConfigError, DataError
from medattn.tasks.detect.formats import class_indices, picture_boxes
from medattn.tasks.detect.sources import BOX_FORMATS, BOX_SPACES, CSV_BOX_COLUMNS, Annotated, DetectionSource

MONAI_SPLITS = {"training": "train", "validation": "val", "test": "test"}


def discovered_names(labels: list[str]) -> list[str]:
    """Class names in a stable order: numerically when every name is a whole number, else alphabetically."""
    unique = sorted(set(labels))
    return sorted(unique, key=int) if all(n.lstrip("-").isdigit() for n in unique) else unique


def _csv_row_box(row: dict, columns: tuple[str, ...], path: Path) -> list[float] | None:
    values = [row.get(c, "") for c in columns]
    if not any(values):
        return None
    try:
        return [float(v) for v in values]
    except ValueError:
        raise DataError(
            f"{path} line {row['line']}: box {dict(zip(columns, values, strict=True))} is not numeric"
        ) from None


def open_csv(path: Path, class_names: list[str] | None) -> DetectionSource:
    rows = read_manifest(path, required=("path", "label", *CSV_BOX_COLUMNS[2]), files=("path",))
    dims = 3 if {"z1", "z2"} <= set(rows[0]) else 2
    columns = CSV_BOX_COLUMNS[dims]
    grouped: dict[str, dict] = {}
    for row in rows:
        image = row["path"][0]
        entry = grouped.setdefault(image, {"row": row, "corners": [], "names": [], "origins": []})
        if row["split"] != entry["row"]["split"] or row.get("patient_id") != entry["row"].get("patient_id"):
            raise DataError(
                f"{path} lines {entry['row']['line']} and {row['line']}: {image} is given two splits or patients"
            )
        corners = _csv_row_box(row, columns, path)
        if corners is not None and not row["label"]:
            raise DataError(f"{path} line {row['line']}: a box without a label")
        if corners is not None:
            entry["corners"].append(corners)
            entry["names"].append(row["label"])
            entry["origins"].append(f"{path} line {row['line']}")
    declared = list(class_names) if class_names else discovered_names([n for e in grouped.values() for n in e["names"]])
    splits: dict[str, list[Annotated]] = {}
    for image, entry in grouped.items():
        row = entry["row"]
        corners = np.asarray(entry["corners"], dtype=np.float32).reshape(-1, 2 * dims)
        boxes = picture_boxes(corners) if dims == 2 else corners
        item = Annotated(
            image,
            boxes,
            class_indices(entry["names"], declared),
            f"{path} line {row['line']}",
            patient_id=row.get("patient_id") or None,
            names=entry["names"],
            origins=entry["origins"],
        )
        splits.setdefault(row["split"], []).append(item)
    return DetectionSource(str(path), "csv", declared, {s: splits[s] for s in SPLITS if s in splits})


def _affine(image: str) -> np.ndarray:
    if image.lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return np.asarray(nib.load(image).affine, dtype=np.float64)  # the header alone; read_nifti keeps it
    from medattn.data.readers import read_image

    return read_image(image)[1].affine


def monai_boxes(raw: np.ndarray, *, box_format: str, box_space: str, image: str) -> np.ndarray:
    """(N, 2D) voxel corners from MONAI boxes in `box_format` and `box_space`."""
    dims = raw.shape[1] // 2
    if box_format == "cccwhd":
        raw = np.concatenate([raw[:, :dims] - raw[:, dims:] / 2, raw[:, :dims] + raw[:, dims:] / 2], axis=1)
    if box_space == "voxel" or len(raw) == 0:
        return raw.astype(np.float32)
    affine = _affine(image)
    flip = np.array([-1.0, -1.0, 1.0]) if box_space == "world_lps" else np.ones(3)  # LPS -> RAS
    inverse = np.linalg.inv(affine)
    corners = np.stack(np.meshgrid(*[[0, 1]] * dims, indexing="ij"), -1).reshape(-1, dims)  # (2^D, D) lo/hi picks
    out = np.zeros_like(raw, dtype=np.float64)
    for k, box in enumerate(raw):
        points = np.stack([np.where(c == 0, box[:dims], box[dims:]) for c in corners])  # (2^D, D) world
        world = np.zeros((len(points), 4))
        world[:, :dims], world[:, 3] = points * flip[:dims], 1.0
        voxel = (world @ inverse.T)[:, :dims]  # as MONAI's AffineBox maps them: no half-voxel shift
        out[k] = np.concatenate([voxel.min(axis=0), voxel.max(axis=0)])
    return out.astype(np.float32)


def open_monai(path: Path, class_names: list[str] | None, *, box_format: str | None, box_space: str | None):
    if box_format not in BOX_FORMATS or box_space not in BOX_SPACES:
        raise ConfigError(
            f"{path}: a MONAI detection JSON does not say how its boxes are written: state --box-format "
            f"({' | '.join(BOX_FORMATS)}) and --box-space ({' | '.join(BOX_SPACES)})"
        )
    spec = json.loads(path.read_text())
    entries = [
        (MONAI_SPLITS[key], f"{path} {key}[{n}]", e) for key in MONAI_SPLITS for n, e in enumerate(spec.get(key) or [])
    ]
    widths = sorted({len(box) for _, _, e in entries for box in e.get("box") or []})
    if len(widths) > 1:
        raise DataError(f"{path}: boxes of different lengths ({widths}): 2D and 3D mixed")
    width = widths[0] if widths else 6  # an image without boxes takes the others' dimension
    splits: dict[str, list[Annotated]] = {}
    names_seen: list[str] = []
    for split, where, entry in entries:
        image = (path.parent / str(entry.get("image", ""))).resolve()
        if not entry.get("image") or not image.exists():
            raise DataError(f"{where}: image {entry.get('image')!r} does not exist")
        raw = np.asarray(entry.get("box") or [], dtype=np.float64).reshape(-1, width)
        labels = [str(v) for v in np.asarray(entry.get("label") or [], dtype=np.int64).ravel()]
        if width not in (4, 6) or len(raw) != len(labels):
            raise DataError(f"{where}: expected N boxes of 4 (2D) or 6 (3D) numbers and N labels")
        boxes = monai_boxes(raw, box_format=box_format, box_space=box_space, image=str(image))
        names_seen += labels
        splits.setdefault(split, []).append(Annotated(str(image), boxes, np.zeros(0), where, names=labels))
    declared = list(class_names) if class_names else None
    if declared is None:
        top = max((int(n) for n in names_seen), default=0)
        declared = [f"class_{k}" for k in range(top + 1)]
    for items in splits.values():
        for item in items:
            indices = [int(n) for n in item.names]
            item.labels = np.asarray([i if 0 <= i < len(declared) else -1 for i in indices], dtype=np.int64)
    source = DetectionSource(str(path), "monai", declared, splits)
    if class_names is None:
        source.notes.append(f"MONAI labels 0..{len(declared) - 1} named class_<k> (name them with data.class_names)")
    return source
