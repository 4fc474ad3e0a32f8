"""One entry point for every format: `read_image(path) -> (array, meta)` and `write_image`.

array is channel-first: (C, H, W) or (C, D, H, W), float32 or the source integer type. meta is an
ImageMeta (spacing in mm, RAS+ affine, orientation, modality, source, DICOM series). Axis order per
format: DICOM (C, [slice,] row, column); NIfTI (C, X, Y, Z) as stored; pictures (C, [page,] row, column).
In every case meta.affine maps the array's spatial indices, in array order, to RAS+ mm.
A file that cannot be read raises one ReadError naming the file and the reason; nothing is half-loaded.
MedMNIST .npz archives hold whole data sets, not images: read them with `medmnist.read_medmnist`.
Labels are never resampled here; writers store them voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from medattn.data.meta import ImageMeta, reading
from medattn.data.nifti import NIFTI_SUFFIXES
from medattn.data.raster import RASTER_SUFFIXES
from medattn.errors import ConfigError, ReadError

DICOM_SUFFIXES = (".dcm", ".dicom")
SUPPORTED_SUFFIXES = (*DICOM_SUFFIXES, *NIFTI_SUFFIXES, *RASTER_SUFFIXES)
WRITABLE_SUFFIXES = (*NIFTI_SUFFIXES, ".png")


_SERIES: ContextVar[str | None] = ContextVar("series", default=None)


@contextmanager
def reading_series(series: str | None) -> Iterator[None]:
    """Within the block, folders holding several DICOM series read the one `series` names (UID or description):
    how `evaluate --series` reaches every folder of a data set without each data source passing it on."""
    token = _SERIES.set(series)
    try:
        yield
    finally:
        _SERIES.reset(token)


def read_image(path: str | Path, *, series_uid: str | None = None) -> tuple[np.ndarray, ImageMeta]:
    """Read one image file, or a folder holding a DICOM series (`series_uid`, a UID or a description, picks one
    of several; inside `reading_series(...)` that choice is the default)."""
    from medattn.data import dicom, nifti, raster  # lazy: pydicom, nibabel and Pillow load on first use

    path = Path(path)
    if not path.exists():
        raise ReadError(path, "no such file or folder")
    if path.is_dir():
        with reading(path, "not a readable DICOM series"):  # what the series reader did not already name
            return dicom.read_dicom_series(path, series_uid=series_uid if series_uid is not None else _SERIES.get())
    if series_uid is not None:  # silently ignoring it would hand back a different series than asked for
        raise ConfigError(f"{path}: --series (series_uid=) picks a series inside a DICOM folder; this is a file")
    name = path.name.lower()
    with reading(path, "the reader failed"):  # each reader names its own failures; this catches what slips by
        if name.endswith(NIFTI_SUFFIXES):
            return nifti.read_nifti(path)
        if name.endswith(RASTER_SUFFIXES):
            return raster.read_raster(path)
        # DICOM files often carry no suffix, or a scanner's own (.IMA): trust the DICM marker over the name.
        if name.endswith(DICOM_SUFFIXES) or dicom.is_dicom_file(path) or path.suffix == "":
            return dicom.read_dicom_file(path)
    hint = "; MedMNIST .npz files are read with medattn.data.medmnist.read_medmnist" if name.endswith(".npz") else ""
    raise ReadError(
        path,
        f"unsupported format {path.suffix!r} (supported: {', '.join(SUPPORTED_SUFFIXES)}, "
        f"a DICOM file without suffix, or a folder holding a DICOM series{hint})",
    )


def one_slice_as_2d(array: np.ndarray) -> np.ndarray:
    """(C, X, Y) for a one-slice volume (C, X, Y, 1): NIfTI stores 2D data with a unit third axis, and a set of
    such files is a 2D set (its model 2D, its masks written back with the unit axis by `predict`)."""
    return array[..., 0] if array.ndim == 4 and array.shape[-1] == 1 else array


def write_image(path: str | Path, array: np.ndarray, meta: ImageMeta) -> None:
    """Write atomically. NIfTI keeps `meta.affine`, so a predicted mask overlays its image in any viewer;
    PNG stores (1, H, W) or (3, H, W) pictures and label maps (labels cast to uint8 when they fit)."""
    from medattn.data import nifti, raster

    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        nifti.write_nifti(path, array, meta)
    elif name.endswith(".png"):
        raster.write_raster(path, array)
    else:
        raise ValueError(f"{path}: write_image writes {', '.join(WRITABLE_SUFFIXES)}")
