"""`medattn predict` for detection runs: the boxes of every input as JSON and CSV, and a picture of them.

For an input `scan.nii.gz` it writes, to `out_dir` (default RUN/predictions/), `scan_boxes.json` (every box with
its class, score, pixel corners and world corners), `scan_boxes.csv` (the columns of a detection CSV, so it can be
read back as data, plus score and world corners) and `scan_boxes.png` (the image with its boxes; a slice mosaic
for volumes). Pixel corners follow the CSV convention (sources.py): in 2D x along columns and y along rows; in 3D
x, y, z along the array axes. World corners are the box's extent in RAS+ millimetres through the image's affine
(pictures carry none: 1 mm per pixel). Boxes scoring under SCORE_THRESHOLD are left out (evaluate scores every
box down to 0.05, as AP needs). A 2D detector given a volume detects it slice by slice along the axis its
card records (or `--slice-axis`), each box one slice thick. Existing files are never replaced without --overwrite.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from medattn.errors import DataError, RunDirError
from medattn.tasks.detect.sources import CSV_BOX_COLUMNS, file_corners

OUTPUTS = ("json", "csv", "png")
SCORE_THRESHOLD = 0.25  # the boxes predict reports, as YOLO's predict does


def world_corners(boxes: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(N, 6) [min x, y, z, max x, y, z] in world mm of each box's corners through `affine` (array axes -> RAS+)."""
    dims = boxes.shape[1] // 2
    picks = np.stack(np.meshgrid(*[[0, 1]] * dims, indexing="ij"), -1).reshape(-1, dims)
    out = np.zeros((len(boxes), 6))
    for k, box in enumerate(boxes):
        corners = np.zeros((len(picks), 4))
        corners[:, :dims] = np.where(picks == 0, box[:dims], box[dims:])
        corners[:, 3] = 1.0
        world = (corners @ affine.T)[:, :3]
        out[k] = np.concatenate([world.min(axis=0), world.max(axis=0)])
    return out


def rows_for(found: dict, affine: np.ndarray, class_names: list[str]) -> list[dict]:
    boxes = np.asarray(found["boxes"], dtype=np.float64)
    pixel, world = file_corners(boxes), world_corners(boxes, affine)
    columns = CSV_BOX_COLUMNS[boxes.shape[1] // 2]
    return [
        {
            "class": class_names[int(label)],
            "score": round(float(score), 5),
            "box": {c: round(float(v), 3) for c, v in zip(columns, corners, strict=True)},
            "world_mm": {"min": [round(float(v), 3) for v in w[:3]], "max": [round(float(v), 3) for v in w[3:]]},
        }
        for label, score, corners, w in zip(found["labels"], found["scores"], pixel, world, strict=True)
    ]


def _csv_text(file: Path, rows: list[dict], dims: int) -> str:
    columns = CSV_BOX_COLUMNS[dims]
    world = [f"world_{a}_{end}" for end in ("min", "max") for a in "xyz"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", *columns, "label", "score", *world])
    for row in rows:
        corners = [row["box"][c] for c in columns]
        writer.writerow(
            [str(file), *corners, row["class"], row["score"], *row["world_mm"]["min"], *row["world_mm"]["max"]]
        )
    if not rows:
        writer.writerow([str(file), *[""] * len(columns), "", "", *[""] * 6])  # a negative image, as the CSV reads it
    return buffer.getvalue()


def slice_by_slice(members, image: np.ndarray, meta, *, where: str, device) -> tuple[int, dict]:
    """(axis, boxes (N, 6) ...) of a 2D detector on a volume (C, X, Y, Z): every slice along the axis detected
    alone (engine/inputs.py picks the axis), its boxes one slice thick."""
    import torch

    from medattn.tasks.detect.inference import detect_image

    axis, views = members[0].spec.slices(image, meta)
    plane = [a for a in range(3) if a != axis]
    parts = []
    for index, (cut, _) in enumerate(views):
        found = detect_image(members, cut, where=f"{where} slice {index} of axis {axis}", device=device)
        flat = found["boxes"]
        boxes = torch.zeros(len(flat), 6)
        boxes[:, plane + [3 + a for a in plane]] = flat
        boxes[:, axis], boxes[:, 3 + axis] = float(index), float(index + 1)
        parts.append({**found, "boxes": boxes})
    return axis, {key: torch.cat([p[key] for p in parts]) for key in ("boxes", "scores", "labels")}


def targets_of(file: Path, out_dir: Path) -> dict[str, Path]:
    from medattn.tasks.segment.sources import file_stem

    return {kind: out_dir / f"{file_stem(file)}_boxes.{kind}" for kind in OUTPUTS}


def predict_boxes(run_dir, files: list[Path], *, out_dir: Path | None, overwrite: bool, series: str | None) -> dict:
    from medattn.data.readers import one_slice_as_2d, read_image
    from medattn.engine.device import select_device
    from medattn.runs import atomic_write_text
    from medattn.tasks.detect.inference import detect_image
    from medattn.tasks.detect.overlay import overlay
    from medattn.tune.ensemble import load_ensemble

    device = select_device("auto")
    run = load_ensemble(run_dir, device=device)
    out_dir = Path(out_dir) if out_dir is not None else run.path / "predictions"
    targets = [targets_of(Path(f), out_dir) for f in files]
    names = [t["json"] for t in targets]
    if len(set(names)) != len(names):
        raise DataError(f"two inputs would write the same file names in {out_dir}; predict them separately")
    existing = [str(p) for t in targets for p in t.values() if p.exists()]
    if existing and not overwrite:
        raise RunDirError(f"{existing[0]} already exists ({len(existing)} file(s) in all); pass --overwrite to replace")
    predictions = []
    for file, target in zip(files, targets, strict=True):
        image, meta = read_image(file, series_uid=series)
        spec = run.members[0].spec
        image = one_slice_as_2d(image) if spec.spatial_dims == 2 else image
        payload: dict = {"file": str(file), "shape": list(image.shape[1:]), "spacing_mm": list(meta.spacing)}
        if spec.is_volume_for_slices(image):
            payload["slice_axis"], found = slice_by_slice(run.members, image, meta, where=str(file), device=device)
        else:
            found = detect_image(run.members, image, where=str(file), device=device)
        kept = found["scores"] >= SCORE_THRESHOLD
        found = {k: v[kept].numpy() for k, v in found.items()}
        dims = found["boxes"].shape[1] // 2
        payload["score_threshold"] = SCORE_THRESHOLD
        rows = rows_for(found, meta.affine, run.class_names)
        payload["boxes"] = rows
        atomic_write_text(target["json"], json.dumps(payload, indent=2) + "\n")
        atomic_write_text(target["csv"], _csv_text(Path(file), rows, dims))
        overlay(image, found, run.class_names, target["png"])
        predictions.append({**payload, "files": {k: str(v) for k, v in target.items()}})
    return {"run": str(run.path), "task": run.task, "out_dir": str(out_dir), "predictions": predictions}


def print_boxes(payload: dict) -> None:
    for row in payload["predictions"]:
        counts: dict[str, int] = {}
        for box in row["boxes"]:
            counts[box["class"]] = counts.get(box["class"], 0) + 1
        found = ", ".join(f"{n} {name}" for name, n in counts.items()) or "no boxes"
        print(f"{row['file']}: {found} -> {row['files']['json']}, {row['files']['png']}")
