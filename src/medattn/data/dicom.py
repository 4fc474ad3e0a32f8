"""DICOM through pydicom: one file, or a folder holding one series.

Axes: one single-frame file gives (C, H, W) = (samples, rows, columns); a series folder or a multi-frame
file gives (C, D, H, W) = (samples, slice, row, column). Slices are sorted by their position along the
slice normal (row direction x column direction), so the slice index grows along the normal.
The affine maps (row, column) or (slice, row, column) indices to RAS+ mm. DICOM patient space is LPS,
so x and y change sign. The slice column of the affine is the measured step between slice positions,
so a gantry tilt shows up as a shear instead of being silently squared off.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from medattn.data.meta import ImageMeta, orientation_codes, reading, require_finite, to_plain
from medattn.errors import ReadError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Rounding in ImagePositionPatient moves gaps by well under 1 %; a bigger spread is a missing or extra
# slice, and a stack with uneven gaps cannot be described by one affine.
GAP_TOLERANCE = 0.01
_EXTRA_TAGS = (
    "WindowCenter",
    "WindowWidth",
    "PhotometricInterpretation",
    "SeriesDescription",
    "StudyInstanceUID",
    "BodyPartExamined",
    "SliceThickness",
)


class _Plane(NamedTuple):
    row_dir: np.ndarray  # unit LPS vector along a row (column index grows)
    col_dir: np.ndarray  # unit LPS vector down a column (row index grows)
    row_spacing: float  # mm between rows (PixelSpacing[0])
    col_spacing: float  # mm between columns (PixelSpacing[1])

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)


def is_dicom_file(path: Path) -> bool:
    """True when the DICM marker of the Part 10 file format sits at byte 128."""
    try:
        with Path(path).open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _read(path: Path, *, pixels: bool = True) -> Any:
    import pydicom

    with reading(path, "not a readable DICOM file"):
        dataset = pydicom.dcmread(path, stop_before_pixels=not pixels)
        # pydicom parses each element's value on first access; touch them all now (sequences too), so a
        # damaged element fails here, naming this file, not later in whatever code reads the tag.
        dataset.walk(lambda _dataset, element: element.value)
    if pixels and not any(tag in dataset for tag in PIXEL_TAGS):
        # pydicom stops quietly at the end of a truncated file, so "no pixels" also means "cut short".
        raise ReadError(path, "the DICOM file holds no pixel data (a header-only object, or truncated)")
    return dataset


def _find(dataset: Any, keyword: str) -> Any:
    """A value from the top level, else from enhanced multi-frame functional groups (shared, then frame 0)."""
    if keyword in dataset and dataset[keyword].value not in (None, ""):
        return dataset[keyword].value
    groups = [
        seq[0]
        for name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
        if (seq := dataset.get(name))
    ]
    for item in (item for group in groups for element in group if element.VR == "SQ" for item in element.value):
        if keyword in item and item[keyword].value not in (None, ""):
            return item[keyword].value
    return None


def _floats(value: Any, count: int, path: Path, keyword: str) -> np.ndarray:
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ReadError(path, f"{keyword} is not numeric ({value!r})") from error
    if array.size != count or not np.isfinite(array).all():
        raise ReadError(path, f"{keyword} must hold {count} finite numbers, found {value!r}")
    return array


def _plane(dataset: Any, path: Path) -> _Plane:
    iop = _find(dataset, "ImageOrientationPatient")
    # Secondary captures and many rasters have no orientation: treat them as axial, unit-less pictures.
    iop = _floats(iop, 6, path, "ImageOrientationPatient") if iop is not None else np.array([1.0, 0, 0, 0, 1, 0])
    row_dir, col_dir = iop[:3], iop[3:]
    norms = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if min(norms) < 1e-3 or abs(np.dot(row_dir, col_dir)) > 1e-2 * norms[0] * norms[1]:
        raise ReadError(path, f"ImageOrientationPatient {iop.tolist()} is not two orthogonal directions")
    spacing = _find(dataset, "PixelSpacing") or _find(dataset, "ImagerPixelSpacing") or (1.0, 1.0)
    spacing = _floats(spacing, 2, path, "PixelSpacing")
    if spacing.min() <= 0:
        raise ReadError(path, f"PixelSpacing must be positive, found {spacing.tolist()}")
    return _Plane(row_dir / norms[0], col_dir / norms[1], float(spacing[0]), float(spacing[1]))


def _position(dataset: Any, path: Path, *, frame: int | None = None) -> np.ndarray | None:
    """ImagePositionPatient of a classic file (frame=None), or of one frame of an enhanced multi-frame file.

    Frames look only in their own functional group: a top-level value would put every frame in one place.
    """
    groups = dataset.get("PerFrameFunctionalGroupsSequence") or []
    value = dataset.get("ImagePositionPatient") if frame is None else None
    if value in (None, "") and len(groups) > (frame or 0):
        plane = groups[frame or 0].get("PlanePositionSequence")
        value = plane[0].get("ImagePositionPatient") if plane else None
    return None if value in (None, "") else _floats(value, 3, path, "ImagePositionPatient")


def _fallback_slice_spacing(dataset: Any) -> float:
    # Only used without positions; SpacingBetweenSlices includes gaps, SliceThickness does not.
    values = (_find(dataset, keyword) for keyword in ("SpacingBetweenSlices", "SliceThickness"))
    return next((float(v) for v in values if isinstance(v, int | float) and float(v) > 0), 1.0)


def _stored_pixels(dataset: Any, path: Path) -> tuple[np.ndarray, float, float]:
    """(C, F, H, W) stored values in native byte order, plus rescale slope and intercept."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    with reading(path, f"cannot decode the pixel data ({getattr(syntax, 'name', 'unknown transfer syntax')})"):
        array = np.asarray(dataset.pixel_array)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    rows, cols = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    if array.size != frames * rows * cols * samples:
        raise ReadError(path, f"decoded {array.shape} pixels, expected {frames} frame(s) of {rows}x{cols}x{samples}")
    # pydicom returns samples last whatever the planar configuration was.
    array = array.reshape(frames, rows, cols, samples).transpose(3, 0, 1, 2)  # (C, F, H, W)
    if array.dtype.byteorder not in "=|":
        array = array.astype(array.dtype.newbyteorder("="))
    slope = float(_find(dataset, "RescaleSlope") or 1.0)  # 0 or empty is a broken tag: read as no rescale
    intercept = float(_find(dataset, "RescaleIntercept") or 0.0)
    return np.ascontiguousarray(array), slope, intercept


def _rescaled(array: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Real-world values: float32 when a rescale applies (or the data is float), else the stored integers."""
    if slope == 1.0 and intercept == 0.0:
        return array.astype(np.float32) if array.dtype.kind == "f" else array
    return array.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _affine(plane: _Plane, origin: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Index (slice, row, column) -> LPS mm, then flipped to RAS."""
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = plane.col_dir * plane.row_spacing  # the next row lies down the column direction
    affine[:3, 2] = plane.row_dir * plane.col_spacing
    affine[:3, 3] = origin
    return LPS_TO_RAS @ affine


def _order(
    positions: list[np.ndarray | None],
    numbers: list[float | None],
    plane: _Plane,
    where: Path,
    *,
    fallback_spacing: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Slice order, LPS step between slices, LPS origin of the first slice, and what decided the order."""
    if all(p is not None for p in positions):
        points = np.stack(positions)  # (N, 3)
        distance = points @ plane.normal
        order = np.argsort(distance, kind="stable")
        gaps = np.diff(distance[order])
        if np.any(gaps < 1e-3):
            raise ReadError(
                where,
                f"{int(np.sum(gaps < 1e-3)) + 1} slices share one position "
                "(a time series, or two acquisitions in one series)",
            )
        if gaps.max() - gaps.min() > GAP_TOLERANCE * gaps.mean():
            raise ReadError(
                where,
                f"slices are not evenly spaced (gaps from {gaps.min():.3f} to {gaps.max():.3f} "
                "mm: a missing slice?), so no single affine describes them",
            )
        step = (points[order[-1]] - points[order[0]]) / (len(points) - 1)
        return order, step, points[order[0]], "ImagePositionPatient"
    if any(n is None for n in numbers):
        raise ReadError(where, "cannot order the slices: ImagePositionPatient and InstanceNumber are missing")
    order = np.argsort(np.asarray(numbers, dtype=float), kind="stable")
    if len(set(numbers)) != len(numbers):
        raise ReadError(where, "cannot order the slices: no positions and repeated InstanceNumber values")
    # Without positions the direction is a guess: increasing InstanceNumber along the slice normal.
    origin = positions[order[0]] if positions[order[0]] is not None else np.zeros(3)
    return order, plane.normal * fallback_spacing, origin, "InstanceNumber"


def _meta(
    dataset: Any, source: Path, spacing: tuple[float, ...], affine: np.ndarray, extra: dict[str, Any]
) -> ImageMeta:
    info: dict[str, Any] = {}
    for keyword in _EXTRA_TAGS:
        value = _find(dataset, keyword)
        if value not in (None, ""):
            info[keyword] = to_plain(value)
    if dataset.get("PatientID"):
        info["patient_id"] = str(dataset.PatientID)  # patient-level splits need it
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None:
        info["transfer_syntax"] = str(getattr(syntax, "name", syntax))
    info.update(extra)
    return ImageMeta(
        spacing=spacing,
        affine=affine,
        orientation=orientation_codes(affine, len(spacing)),
        modality=str(dataset.get("Modality", "") or "OT"),
        source=str(source),
        series_uid=str(dataset.get("SeriesInstanceUID", "") or "") or None,
        extra=info,
    )


def read_dicom_file(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """One file: (C, H, W) for one frame, (C, D, H, W) for a multi-frame object."""
    path = Path(path)
    dataset = _read(path)
    plane = _plane(dataset, path)
    stored, slope, intercept = _stored_pixels(dataset, path)
    array = _rescaled(stored, slope, intercept)
    require_finite(array, path)
    rescale = {"slope": slope, "intercept": intercept, "applied": (slope, intercept) != (1.0, 0.0)}
    frames = array.shape[1]
    if frames == 1:
        origin = _position(dataset, path)
        # 2D: columns reordered to (row, column, normal) so the first two match the array's spatial axes.
        affine = _affine(plane, np.zeros(3) if origin is None else origin, plane.normal)[:, [1, 2, 0, 3]]
        return array[:, 0], _meta(dataset, path, (plane.row_spacing, plane.col_spacing), affine, {"rescale": rescale})
    positions = [_position(dataset, path, frame=i) for i in range(frames)]
    order, step, origin, how = _order(
        positions, list(range(frames)), plane, path, fallback_spacing=_fallback_slice_spacing(dataset)
    )
    spacing = (float(np.linalg.norm(step)), plane.row_spacing, plane.col_spacing)
    extra = {"rescale": rescale, "slice_order": how if how != "InstanceNumber" else "frame order"}
    return np.ascontiguousarray(array[:, order]), _meta(dataset, path, spacing, _affine(plane, origin, step), extra)


def _listing(series: dict[str, list]) -> str:
    """Each series as a person picks one: its description, modality, size and UID."""
    rows = []
    for uid, items in sorted(series.items()):
        header = items[0][1]
        description = str(header.get("SeriesDescription", "") or "").strip() or "no description"
        modality = str(header.get("Modality", "") or "?")
        size = f"{header.get('Rows', '?')}x{header.get('Columns', '?')}"
        rows.append(f"{uid or '(no SeriesInstanceUID)'} ({description}, {modality}, {len(items)} file(s) of {size})")
    return "; ".join(rows)


def _pick(series: dict[str, list], wanted: str, folder: Path) -> list:
    """The series whose UID is `wanted`, or else the one whose SeriesDescription is (ignoring case and spaces):
    a description such as "T2 FLAIR" picks the same sequence in every study folder of a data set."""
    if wanted in series:
        return series[wanted]
    key = wanted.strip().casefold()
    named = [
        uid for uid, items in series.items() if str(items[0][1].get("SeriesDescription", "")).strip().casefold() == key
    ]
    if len(named) == 1:
        return series[named[0]]
    why = f"{len(named)} series are described as {wanted!r}" if named else f"no series {wanted!r} here"
    raise ReadError(folder, f"{why}; series found: {_listing(series)}; --series takes a UID or a description")


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None) -> tuple[np.ndarray, ImageMeta]:
    """A folder holding one series (or several, with `series_uid` picking one): (C, D, H, W)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ReadError(folder, "empty folder")
    candidates = [p for p in files if p.suffix.lower() == ".dcm" or is_dicom_file(p)]
    if not candidates:
        raise ReadError(folder, f"no DICOM files among its {len(files)} file(s) (no .dcm suffix, no DICM marker)")
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for path in candidates:
        header = _read(path, pixels=False)
        if "Rows" in header:  # DICOMDIR indexes, structured reports and presentation states have no rows
            series[str(header.get("SeriesInstanceUID", "") or "")].append((path, header))
    if not series:
        raise ReadError(folder, f"none of its {len(candidates)} DICOM file(s) is an image (DICOMDIR or reports only)")
    if series_uid is not None:
        chosen = _pick(series, series_uid, folder)
    elif len(series) > 1:
        raise ReadError(
            folder,
            f"holds {len(series)} series: {_listing(series)}; pick one with --series UID or --series DESCRIPTION "
            "(series_uid= in Python)",
        )
    else:
        chosen = next(iter(series.values()))
    return read_dicom_file(chosen[0][0]) if len(chosen) == 1 else _stack(folder, chosen)


def _stack(folder: Path, items: list[tuple[Path, Any]]) -> tuple[np.ndarray, ImageMeta]:
    headers = [header for _, header in items]
    plane = _plane(headers[0], items[0][0])
    grid = (headers[0].get("Rows"), headers[0].get("Columns"), *plane[2:])
    for path, header in items[1:]:
        other = _plane(header, path)
        if (header.get("Rows"), header.get("Columns")) != grid[:2] or not np.allclose(other[2:], grid[2:], rtol=1e-3):
            raise ReadError(path, "rows, columns or pixel spacing differ from the first slice of the series")
        if not np.allclose(np.concatenate(other[:2]), np.concatenate(plane[:2]), atol=1e-3):
            raise ReadError(path, "ImageOrientationPatient differs from the first slice: not one stack")
        if int(header.get("NumberOfFrames", 1) or 1) > 1:
            raise ReadError(path, "a multi-frame file inside a series folder: read it on its own")
    positions = [_position(h, p) for p, h in items]
    numbers = [None if h.get("InstanceNumber") in (None, "") else float(h.InstanceNumber) for h in headers]
    order, step, origin, how = _order(
        positions, numbers, plane, folder, fallback_spacing=_fallback_slice_spacing(headers[0])
    )
    slices, rescales = [], []
    for index in order:  # decode in slice order, every file fully checked before anything is returned
        path = items[index][0]
        stored, slope, intercept = _stored_pixels(_read(path), path)
        if stored.shape[1] != 1 or (slices and stored.shape[0] != slices[0].shape[0]):
            raise ReadError(path, f"pixel array {stored.shape} does not match the rest of the series")
        slices.append(stored[:, 0])
        rescales.append((slope, intercept))
    applied = any(r != (1.0, 0.0) for r in rescales)
    if applied or slices[0].dtype.kind == "f":  # one real rescale makes the whole volume float32
        slices = [_rescaled(s, *r).astype(np.float32) for s, r in zip(slices, rescales, strict=True)]
    volume = np.stack(slices, axis=1)  # (C, D, H, W)
    require_finite(volume, folder)
    first = headers[order[0]]
    spacing = (float(np.linalg.norm(step)), plane.row_spacing, plane.col_spacing)
    extra = {
        "slice_order": how,
        "files": len(items),
        "rescale": {"slope": rescales[0][0], "intercept": rescales[0][1], "applied": applied},
    }
    return volume, _meta(first, folder, spacing, _affine(plane, origin, step), extra)
