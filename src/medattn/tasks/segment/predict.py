"""`medattn predict` for segmentation runs: one mask file per input, on the input's grid, with label volumes.

NIfTI and DICOM inputs (a file or a series folder) give `<name>_mask.nii.gz` written with the input's
affine, so it overlays the image in any viewer; pictures give `<name>_mask.png` holding the label values
0..K-1. Masks go to `out_dir` (default RUN/predictions/); an existing mask is never replaced silently.
Volumes are per class in ml (3D) or mm^2 (2D) from the input's spacing (pictures carry none: 1 mm assumed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.raster import RASTER_SUFFIXES
from medattn.errors import DataError, RunDirError
from medattn.tasks.segment.sources import file_stem


def mask_path(file: Path, out_dir: Path) -> Path:
    picture = file.is_file() and file.name.lower().endswith(RASTER_SUFFIXES)
    return out_dir / f"{file_stem(file)}_mask{'.png' if picture else '.nii.gz'}"


def label_volumes(labels: np.ndarray, spacing, class_names: list[str]) -> tuple[dict[str, float], str]:
    """Foreground volume per class: ml for volumes, mm^2 for images."""
    counts = np.bincount(labels.ravel(), minlength=len(class_names))
    voxel = float(np.prod(spacing))
    unit, scale = ("ml", voxel / 1000.0) if labels.ndim == 3 else ("mm2", voxel)
    return {name: float(counts[k] * scale) for k, name in enumerate(class_names) if k > 0}, unit


def predict_masks(
    run_dir: str | Path,
    files: list[Path],
    *,
    out_dir: Path | None = None,
    overwrite: bool = False,
    tta: bool = False,
    series: str | None = None,
) -> dict:
    """Masks of `files` from a run, or from the mean softmax of a fold ensemble; with `tta`, test-time flips."""
    from medattn.data.clinical_images import file_patient
    from medattn.data.readers import read_image, write_image
    from medattn.engine.device import select_device
    from medattn.tasks.segment.inference import ensemble_segment
    from medattn.tune.ensemble import load_ensemble

    device = select_device("auto")
    run = load_ensemble(run_dir, device=device)
    out_dir = Path(out_dir) if out_dir is not None else run.path / "predictions"
    targets = [mask_path(Path(f), out_dir) for f in files]
    if len(set(targets)) != len(targets):
        raise DataError(f"two inputs would write the same mask name in {out_dir}; predict them separately")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise RunDirError(f"{existing[0]} already exists ({len(existing)} mask(s) in all); pass --overwrite to replace")
    rows = []
    for file, target in zip(files, targets, strict=True):
        image, meta = read_image(file, series_uid=series)
        patient, known = file_patient(file)
        labels = ensemble_segment(run.members, image, meta, device=device, where=str(file), tta=tta, patient=patient)
        spacing = meta.spacing[: labels.ndim]
        stored = labels.reshape(image.shape[1:])  # a one-slice NIfTI keeps its slice axis
        write_image(target, stored[None], meta)
        volumes, unit = label_volumes(labels, spacing, run.class_names)
        row = {
            "file": str(file),
            "mask": str(target),
            "shape": list(stored.shape),
            "spacing_mm": [float(s) for s in spacing],
            "volumes": volumes,
            "unit": unit,
            **known,
        }
        spec = run.members[0].spec
        if spec.is_volume_for_slices(image):  # a 2D model: segmented slice by slice, stacked into one volume
            row["slice_axis"] = spec.axis_for(image, meta)
        rows.append(row)
    return {"run": str(run.path), "task": run.task, "tta": tta, "out_dir": str(out_dir), "predictions": rows}


def print_masks(payload: dict) -> None:
    for row in payload["predictions"]:
        volumes = ", ".join(f"{k} {v:.3f} {row['unit']}" for k, v in row["volumes"].items())
        print(f"{row['file']} -> {row['mask']} ({volumes})")
