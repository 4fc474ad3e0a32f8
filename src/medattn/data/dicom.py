"""DICOM through pydicom: one file, or a folder holding one series.

Slices are ordered by their position along the slice normal (InstanceNumber when positions are absent),
the spacing between slices comes from those positions (SliceThickness ignores gaps), rescale
slope/intercept are applied, and compressed transfer syntaxes decode through pydicom's handlers.
Arrays are (C, H, W) for one slice and (C, D, H, W) for a series; the affine maps (slice, row, column)
indices to RAS+ millimetres (DICOM's patient space is LPS, so x and y change sign).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from medattn.data.meta import ImageMeta, orientation_codes
from medattn.errors import ReadError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_dicom_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _dataset(path: Path, *, pixels: bool = True):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise ReadError(path, f"not a readable DICOM file ({error})") from error
    if pixels and "PixelData" not in dataset:
        raise ReadError(path, "the DICOM file holds no pixel data")
    return dataset


def _pixels(dataset, path: Path) -> np.ndarray:
    """(C, frames, H, W) in stored values, rescale applied."""
    try:
        array = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for damaged or undecodable pixel data
        raise ReadError(path, f"cannot decode the pixel data ({type(error).__name__}: {error})") from error
    samples = int(getattr(dataset, "SamplesPerPixel", 1))
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if samples == 1:
        array = array.reshape(frames, *array.shape[-2:])[None]  # (1, F, H, W)
    else:
        array = np.moveaxis(array.reshape(frames, *array.shape[-3:]), -1, 0)  # (3, F, H, W)
    slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
    intercept = float(getattr(dataset, "RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        array = array.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return array.astype(array.dtype.newbyteorder("=")) if array.dtype.byteorder not in "=|" else array


def _geometry(dataset) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    orientation = np.asarray(getattr(dataset, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    spacing = getattr(dataset, "PixelSpacing", None) or getattr(dataset, "ImagerPixelSpacing", None) or [1, 1]
    return row_dir, col_dir, (float(spacing[0]), float(spacing[1]))


def _affine(dataset, slice_vector: np.ndarray) -> np.ndarray:
    """Voxel (slice, row, column) -> LPS, then to RAS."""
    row_dir, col_dir, (row_spacing, col_spacing) = _geometry(dataset)
    origin = np.asarray(getattr(dataset, "ImagePositionPatient", [0, 0, 0]), dtype=float)
    affine = np.eye(4)
    affine[:3, 0] = slice_vector
    affine[:3, 1] = col_dir * row_spacing  # moving down a row follows the column direction
    affine[:3, 2] = row_dir * col_spacing
    affine[:3, 3] = origin
    return LPS_TO_RAS @ affine


def _meta(dataset, path: Path, spacing: tuple[float, ...], affine: np.ndarray) -> ImageMeta:
    extra = {}
    for tag in (
        "WindowCenter",
        "WindowWidth",
        "PhotometricInterpretation",
        "PatientID",
        "SeriesDescription",
        "BodyPartExamined",
    ):
        value = getattr(dataset, tag, None)
        if value is not None and value != "":
            extra[tag] = (
                [float(v) for v in value]
                if tag.startswith("Window") and hasattr(value, "__len__") and not isinstance(value, str)
                else (float(value) if tag.startswith("Window") else str(value))
            )
    return ImageMeta(
        spacing=spacing,
        affine=affine,
        orientation=orientation_codes(affine),
        modality=str(getattr(dataset, "Modality", "OT") or "OT"),
        source=str(path),
        series_uid=str(getattr(dataset, "SeriesInstanceUID", "")) or None,
        extra=extra,
    )


def read_dicom_file(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    path = Path(path)
    dataset = _dataset(path)
    array = _pixels(dataset, path)  # (C, F, H, W)
    _, _, (row_spacing, col_spacing) = _geometry(dataset)
    if array.shape[1] == 1:
        affine = _affine(dataset, np.cross(*_geometry(dataset)[:2]))[:, [1, 2, 0, 3]]  # (row, column, slice)
        return array[:, 0], _meta(dataset, path, (row_spacing, col_spacing), affine)
    thickness = float(getattr(dataset, "SpacingBetweenSlices", 0) or getattr(dataset, "SliceThickness", 1) or 1)
    normal = np.cross(*_geometry(dataset)[:2])
    affine = _affine(dataset, normal * thickness)
    return array, _meta(dataset, path, (thickness, row_spacing, col_spacing), affine)


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None) -> tuple[np.ndarray, ImageMeta]:
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ReadError(folder, "empty folder")
    candidates = [p for p in files if p.suffix.lower() == ".dcm" or is_dicom_file(p)]
    if not candidates:
        raise ReadError(folder, "no DICOM files in the folder")
    series = defaultdict(list)
    for path in candidates:
        header = _dataset(path, pixels=False)
        if hasattr(header, "Rows"):  # an image; DICOMDIR and structured reports have no rows
            series[str(getattr(header, "SeriesInstanceUID", ""))].append((path, header))
    if series_uid is not None:
        if series_uid not in series:
            raise ReadError(folder, f"no series {series_uid} (found: {', '.join(series)})")
        chosen = series[series_uid]
    elif len(series) > 1:
        raise ReadError(folder, f"holds {len(series)} series ({', '.join(sorted(series))}); pass series_uid")
    else:
        chosen = next(iter(series.values()))
    if len(chosen) == 1:
        return read_dicom_file(chosen[0][0])
    return _stack(folder, chosen)


def _stack(folder: Path, items: list) -> tuple[np.ndarray, ImageMeta]:
    first = items[0][1]
    row_dir, col_dir, _ = _geometry(first)
    normal = np.cross(row_dir, col_dir)
    if all(hasattr(h, "ImagePositionPatient") for _, h in items):
        order = [float(np.dot(normal, np.asarray(h.ImagePositionPatient, dtype=float))) for _, h in items]
    else:
        order = [float(getattr(h, "InstanceNumber", i)) for i, (_, h) in enumerate(items)]
    items = [item for _, item in sorted(zip(order, items, strict=True), key=lambda pair: pair[0])]
    positions = sorted(order)
    gaps = np.diff(positions)
    if np.any(gaps <= 0):
        raise ReadError(folder, "two slices share one position: the folder mixes acquisitions")
    if gaps.max() - gaps.min() > 0.01 * gaps.mean():
        raise ReadError(folder, f"slices are not evenly spaced (gaps {gaps.min():.3f}-{gaps.max():.3f} mm)")
    slices = []
    for path, _ in items:
        dataset = _dataset(path)
        array = _pixels(dataset, path)
        if slices and array.shape != slices[0].shape:
            raise ReadError(path, f"slice shape {array.shape[1:]} differs from {slices[0].shape[1:]}")
        slices.append(array)
    volume = np.concatenate(slices, axis=1)  # (C, D, H, W)
    if volume.dtype.kind == "f" and not np.isfinite(volume).all():
        raise ReadError(folder, "NaN or infinite values after rescaling")
    dataset = _dataset(items[0][0], pixels=False)
    step = float(gaps.mean())
    _, _, (row_spacing, col_spacing) = _geometry(dataset)
    return volume, _meta(dataset, folder, (step, row_spacing, col_spacing), _affine(dataset, normal * step))
