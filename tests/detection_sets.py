"""Tiny detection sets in every layout detection reads, holding the same objects, for the detection tests.

Each image holds one to three squares (cubes in 3D) on a textured background: class "bright" well above it,
class "dark" well below it; every fourth image holds none (a negative image). The boxes are exact: a square over
pixels lo..hi - 1 has the box [lo, hi) along each array axis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from medattn.data.meta import ImageMeta
from medattn.data.readers import write_image

CLASSES = ("bright", "dark")
SHAPE = {2: (48, 64), 3: (24, 28, 20)}
VALUES = {"uint8": (120, 230, 15), "int16": (40, 400, -300), "float32": (1.0, 9.5, -6.0), "float64": (0.5, 4.0, -3.0)}


def objects(index: int, dims: int, dtype: str = "uint8", *, seed: int = 0):
    """(image (1, *S) in `dtype`, boxes (N, 2D) float32 array axes, labels (N,))."""
    rng = np.random.default_rng(seed * 1000 + index)
    kind = ("uint8", "float32")[index % 2] if dtype == "mixed" else dtype
    base, bright, dark = VALUES[kind]
    shape = SHAPE[dims]
    image = np.full(shape, float(base)) + rng.normal(0, abs(bright - base) * 0.05, shape)
    boxes, labels = [], []
    count = 0 if index % 4 == 3 else int(rng.integers(1, 4))
    taken = np.zeros(shape, bool)
    for _ in range(count * 10):
        if len(boxes) == count:
            break
        side = int(rng.integers(5, 10)) if dims == 2 else int(rng.integers(4, 7))
        start = [int(rng.integers(1, s - side - 1)) for s in shape]
        region = tuple(slice(a, a + side) for a in start)
        if taken[tuple(slice(max(a - 1, 0), a + side + 1) for a in start)].any():
            continue
        label = int(rng.integers(0, 2))
        image[region] = bright if label == 0 else dark
        taken[region] = True
        boxes.append([*start, *[a + side for a in start]])
        labels.append(label)
    if np.issubdtype(np.dtype(kind), np.integer):
        image = np.clip(np.round(image), np.iinfo(kind).min, np.iinfo(kind).max)
    return image.astype(kind)[None], np.asarray(boxes, np.float32).reshape(-1, 2 * dims), np.asarray(labels, np.int64)


def write_picture(folder: Path, name: str, image: np.ndarray, *, layout: str = "png") -> Path:
    """PNG for 2D uint8 pictures, DICOM for the dicom layout, NIfTI otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "dicom":
        from tests.matrix_sets import write_dicom

        return write_dicom(folder / name, image[0], modality="ct")
    if image.ndim == 3 and image.dtype == np.uint8 and layout != "nifti":
        path = folder / f"{name}.png"
        Image.fromarray(image[0]).save(path)
        return path
    path = folder / f"{name}.nii.gz"
    write_image(path, image, ImageMeta(spacing=(1.0,) * (image.ndim - 1), affine=np.diag([2.0, 1.5, 1.0, 1.0])))
    return path


def _items(n: int, dims: int, dtype: str = "uint8", seed: int = 0):
    return [objects(i, dims, dtype, seed=seed) for i in range(n)]


def xy(boxes: np.ndarray) -> np.ndarray:
    """Picture corners (x1, y1, x2, y2) from 2D array-axis boxes."""
    return boxes[:, [1, 0, 3, 2]]


def csv_set(
    root: Path, *, n: int = 16, dims: int = 2, dtype: str = "uint8", layout: str = "png", seed: int = 0
) -> Path:
    """root/images/* and root/boxes.csv: path,x1,y1,x2,y2,label (3D: with z1, z2) and patient_id."""
    columns = "x1,y1,x2,y2" if dims == 2 else "x1,y1,z1,x2,y2,z2"
    lines = [f"path,{columns},label,patient_id"]
    for i, (image, boxes, labels) in enumerate(_items(n, dims, dtype, seed)):
        path = write_picture(root / "images", f"case{i:02d}", image, layout=layout)
        corners = xy(boxes) if dims == 2 else boxes
        relative = path.relative_to(root)
        for box, label in zip(corners, labels, strict=True):
            lines.append(f"{relative},{','.join(f'{v:g}' for v in box)},{CLASSES[label]},p{i // 2}")
        if not len(boxes):
            lines.append(f"{relative},{',' * (2 * dims - 1)},,p{i // 2}")
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    return root / "boxes.csv"


def voc_set(root: Path, *, n: int = 12, seed: int = 0) -> Path:
    """root/Annotations/*.xml (1-based inclusive corners) and root/JPEGImages/*.png."""
    (root / "Annotations").mkdir(parents=True)
    for i, (image, boxes, labels) in enumerate(_items(n, 2, seed=seed)):
        path = write_picture(root / "JPEGImages", f"img{i:02d}", image)
        objects_xml = "".join(
            f"<object><name>{CLASSES[label]}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1:g}</xmin>"
            f"<ymin>{y1 + 1:g}</ymin><xmax>{x2:g}</xmax><ymax>{y2:g}</ymax></bndbox></object>"
            for (x1, y1, x2, y2), label in zip(xy(boxes), labels, strict=True)
        )
        size = "<size><width>64</width><height>48</height></size>"
        xml = f"<annotation><filename>{path.name}</filename>{size}{objects_xml}</annotation>"
        (root / "Annotations" / f"img{i:02d}.xml").write_text(xml)
    return root


def coco_set(root: Path, *, n: int = 12, seed: int = 0) -> Path:
    """root/instances.json (bbox x, y, w, h) beside root/images/."""
    images, annotations = [], []
    for i, (image, boxes, labels) in enumerate(_items(n, 2, seed=seed)):
        path = write_picture(root / "images", f"img{i:02d}", image)
        images.append({"id": i + 1, "file_name": path.name, "width": 64, "height": 48})
        for (x1, y1, x2, y2), label in zip(xy(boxes), labels, strict=True):
            bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i + 1, "bbox": bbox, "category_id": int(label) + 7}
            )
    categories = [{"id": 7 + k, "name": name} for k, name in enumerate(CLASSES)]
    (root / "instances.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root / "instances.json"


def yolo_set(root: Path, *, n: int = 12, seed: int = 0) -> Path:
    """root/images/*.png, root/labels/*.txt (class cx cy w h normalised), root/classes.txt."""
    (root / "labels").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    height, width = SHAPE[2]
    for i, (image, boxes, labels) in enumerate(_items(n, 2, seed=seed)):
        write_picture(root / "images", f"img{i:02d}", image)
        rows = []
        for (x1, y1, x2, y2), label in zip(xy(boxes), labels, strict=True):
            centre = f"{(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f}"
            rows.append(f"{label} {centre} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
        if rows:  # a negative image has no label file at all
            (root / "labels" / f"img{i:02d}.txt").write_text("\n".join(rows) + "\n")
    return root


def monai_set(
    root: Path, *, n: int = 12, dtype: str = "float32", box_format: str = "cccwhd", box_space: str = "world"
) -> Path:
    """root/dataset.json (training / validation lists) of 3D NIfTI volumes; boxes as MONAI writes them."""
    entries = []
    affine = np.diag([2.0, 1.5, 1.0, 1.0])
    for i, (image, boxes, labels) in enumerate(_items(n, 3, dtype)):
        path = write_picture(root / "images", f"vol{i:02d}", image, layout="nifti")
        corners = boxes.astype(np.float64)
        if box_space != "voxel":  # RAS+ mm through the affine; LPS mm flips the first two axes
            scale = np.diag(affine)[:3] * (np.array([-1.0, -1.0, 1.0]) if box_space == "world_lps" else 1.0)
            ends = np.stack([corners[:, :3] * scale, corners[:, 3:] * scale])
            corners = np.concatenate([ends.min(axis=0), ends.max(axis=0)], axis=1)
        if box_format == "cccwhd":
            corners = np.concatenate([(corners[:, :3] + corners[:, 3:]) / 2, corners[:, 3:] - corners[:, :3]], axis=1)
        entries.append({"image": f"images/{path.name}", "box": corners.tolist(), "label": labels.tolist()})
    spec = {"training": entries[: n - 3], "validation": entries[n - 3 :]}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root / "dataset.json"


def detection_set(root: Path, layout: str, dims: int, dtype: str, modality: str, n: int = 12) -> Path:
    """The matrix's detection cell (tests/test_matrix.py): a CSV of boxes over PNG (2D uint8), NIfTI or DICOM
    files, a VOC, COCO or YOLO set of pictures, or a MONAI detection JSON of volumes."""
    builders = {"voc": voc_set, "coco": coco_set, "yolo": yolo_set}
    if layout in builders:
        return builders[layout](root / "set", n=n)
    if layout == "monai":
        return monai_set(root / "set", n=n, dtype=dtype, box_format="xyzxyz", box_space="voxel")
    files = "dicom" if layout == "dicom" else "png" if dims == 2 and dtype == "uint8" else "nifti"
    return csv_set(root / "set", n=n, dims=dims, dtype=dtype, layout=files)
