"""`medattn predict` for translation runs: the synthesised image in the input's format and on its grid, and a
side-by-side picture (source, prediction).

NIfTI and DICOM inputs (a file or a series folder) give `<name>_translated.nii.gz` written with the input's
affine, so it overlays the source in any viewer; pictures give `<name>_translated.png` in the training targets'
stored type (8-bit targets come back as 8-bit). A run trained on picked channels takes files holding all the
channels (it picks the source ones) or just the source channels. Nothing existing is replaced silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.raster import RASTER_SUFFIXES
from medattn.errors import DataError, RunDirError


def output_paths(file: Path, out_dir: Path) -> tuple[Path, Path]:
    from medattn.tasks.segment.sources import file_stem

    picture = file.is_file() and file.name.lower().endswith(RASTER_SUFFIXES)
    stem = file_stem(file)
    return out_dir / f"{stem}_translated{'.png' if picture else '.nii.gz'}", out_dir / f"{stem}_side_by_side.png"


def source_channels(image: np.ndarray, card: dict, where: str) -> np.ndarray:
    """The channels the model translates from: picked from a file holding every channel, or the file's own."""
    picked = card["translation"]["source_channels"]
    if picked is None or image.shape[0] == len(picked):
        return image
    if image.shape[0] > max(picked):
        return image[picked]
    raise DataError(f"{where}: {image.shape[0]} channel(s); the run translates channels {picked} of its inputs")


def _stored(values: np.ndarray, dtype: str) -> np.ndarray:
    kind = np.dtype(dtype)
    if kind.kind in "ui":
        info = np.iinfo(kind)
        return np.clip(np.round(values), info.min, info.max).astype(kind)
    return values.astype(np.float32)


def predict_files(
    run_dir, files: list[Path], *, out_dir: Path | None, overwrite: bool, series: str | None = None
) -> dict:
    from medattn.data.readers import one_slice_as_2d, read_image, write_image
    from medattn.tasks.translate.figures import case_row, mosaic, write_png
    from medattn.tasks.translate.inference import target_scale, translate_stored
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    first = run.members[0]
    card, scale = first.card, target_scale(first.card)
    out_dir = Path(out_dir) if out_dir is not None else run.path / "predictions"
    paths = [output_paths(Path(f), out_dir) for f in files]
    if len({p for p, _ in paths}) != len(paths):
        raise DataError(f"two inputs would write the same file name in {out_dir}; predict them separately")
    existing = [str(p) for pair in paths for p in pair if p.exists()]
    if existing and not overwrite:
        raise RunDirError(f"{existing[0]} already exists ({len(existing)} file(s) in all); pass --overwrite to replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for file, (target, picture) in zip(files, paths, strict=True):
        raw, meta = read_image(file, series_uid=series)
        grid = raw.shape[1:]
        image = source_channels(one_slice_as_2d(raw) if first.spec.spatial_dims == 2 else raw, card, str(file))
        pred = translate_stored(run.members, image, meta, where=str(file))  # (Ct, *S)
        stored = _stored(pred, scale.dtype)
        write_image(target, stored.reshape(stored.shape[0], *grid), meta)
        write_png(picture, mosaic([case_row(image, [pred], low=scale.low, high=scale.high)]))
        rows.append(
            {
                "file": str(file),
                "output": str(target),
                "picture": str(picture),
                "shape": list(grid),
                "dtype": str(stored.dtype),
                "range": [float(pred.min()), float(pred.max())],
            }
        )
    return {"run": str(run.path), "task": run.task, "out_dir": str(out_dir), "predictions": rows}
