"""One entry point for every format: `read_image(path) -> (array, meta)` and `write_image`.

array is channel-first, (C, H, W) or (C, D, H, W); meta is an ImageMeta (spacing in mm, RAS affine,
orientation, modality, source, DICOM series). A file that cannot be read raises one ReadError naming
the file and the reason; nothing is half-loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.meta import ImageMeta
from medattn.data.nifti import NIFTI_SUFFIXES
from medattn.data.raster import RASTER_SUFFIXES
from medattn.errors import ReadError

SUPPORTED_SUFFIXES = (".dcm", *NIFTI_SUFFIXES, *RASTER_SUFFIXES)


def read_image(path: str | Path, *, series_uid: str | None = None) -> tuple[np.ndarray, ImageMeta]:
    from medattn.data import dicom, nifti, raster

    path = Path(path)
    if not path.exists():
        raise ReadError(path, "no such file or folder")
    if path.is_dir():
        return dicom.read_dicom_series(path, series_uid=series_uid)
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return nifti.read_nifti(path)
    if name.endswith(RASTER_SUFFIXES):
        return raster.read_raster(path)
    if name.endswith(".dcm") or dicom.is_dicom_file(path):
        return dicom.read_dicom_file(path)
    if path.suffix == "":
        return dicom.read_dicom_file(path)  # DICOM files often have no suffix at all
    raise ReadError(
        path,
        f"unsupported format {path.suffix!r} (supported: {', '.join(SUPPORTED_SUFFIXES)}, or a DICOM series folder)",
    )


def write_image(path: str | Path, array: np.ndarray, meta: ImageMeta) -> None:
    """NIfTI keeps the affine of `meta` (masks overlay their image); PNG stores 2D label maps or images."""
    from medattn.data import nifti, raster

    name = str(path).lower()
    if name.endswith(NIFTI_SUFFIXES):
        nifti.write_nifti(path, array, meta)
    elif name.endswith(".png"):
        raster.write_raster(path, array)
    else:
        raise ValueError(f"{path}: write_image supports .nii, .nii.gz and .png")
