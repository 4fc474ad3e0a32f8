"""`medattn data boxes --masks DATA --out boxes.csv`: a detection CSV from a segmentation set's masks.

DATA is any segmentation layout (a folder with images/ and masks/, an MSD dataset.json, a CSV image,mask):
every connected piece of every label (data/mask_boxes.py) becomes a box named by `class_names` (label 1 first),
else by the data's own class names (MSD labels), else by the label's value; masks holding 0/255 read as label 1.
An image whose mask is empty gets one row without a box (a negative image). Patient ids and declared splits carry
over, and paths are written relative to the CSV.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from medattn.errors import RunDirError
from medattn.tasks.detect.sources import CSV_BOX_COLUMNS, file_corners


def _relative(path: str, folder: Path) -> str:
    target = Path(path).resolve()
    try:
        return str(target.relative_to(folder.resolve()))
    except ValueError:
        import os

        return os.path.relpath(target, folder.resolve())


def write_mask_boxes(
    masks: str | Path,
    out: str | Path,
    *,
    min_size: int = 1,
    connectivity: str = "faces",
    class_names: list[str] | None = None,
    overwrite: bool = False,
) -> dict:
    """Write the CSV; returns a summary (images, boxes per class, negatives)."""
    from medattn.data.mask_boxes import mask_boxes
    from medattn.data.readers import one_slice_as_2d, read_image
    from medattn.progress import track
    from medattn.runs import atomic_write_text
    from medattn.tasks.segment.sources import open_segmentation

    out = Path(out)
    if out.exists() and not overwrite:
        raise RunDirError(f"{out} already exists; pass --force to replace it")
    source = open_segmentation(masks)
    names = ["background", *class_names] if class_names else source.class_names
    rows, counts, negatives, dims_seen = [], {}, 0, set()
    with_patients = any(c.patient_id for cases in source.splits.values() for c in cases)
    with_splits = set(source.splits) != {"train"}
    for split, cases in source.splits.items():
        for case in track(cases, f"reading {split} masks"):
            raw = one_slice_as_2d(read_image(case.mask)[0])
            mask = raw[0].astype(np.int64)
            if set(np.unique(mask).tolist()) <= {0, 255}:
                mask = np.where(mask == 255, 1, mask)
            boxes, labels = mask_boxes(mask, min_size=min_size, connectivity=connectivity)
            dims_seen.add(mask.ndim)
            extra = ([case.patient_id or ""] if with_patients else []) + ([split] if with_splits else [])
            image = _relative(case.images[0], out.parent)
            if not len(boxes):
                negatives += 1
                rows.append([image, *[""] * (2 * mask.ndim), "", *extra])
            for corners, label in zip(file_corners(boxes), labels, strict=True):
                name = names[label] if names and label < len(names) else str(label)
                counts[name] = counts.get(name, 0) + 1
                rows.append([image, *[f"{v:g}" for v in corners], name, *extra])
    dims = max(dims_seen)
    header = ["path", *CSV_BOX_COLUMNS[dims], "label"] + (["patient_id"] if with_patients else [])
    header += ["split"] if with_splits else []
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    atomic_write_text(out, buffer.getvalue())
    images = sum(len(cases) for cases in source.splits.values())
    return {
        "masks": str(source.path),
        "out": str(out),
        "images": images,
        "boxes": counts,
        "images_without_boxes": negatives,
        "min_size": min_size,
        "connectivity": connectivity,
    }
