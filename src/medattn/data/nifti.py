"""NIfTI-1 and NIfTI-2 (.nii, .nii.gz) through nibabel: axes kept as stored, affine kept as is.

A 3D image becomes (1, X, Y, Z); a 4D image puts its fourth axis first as channels: (T, X, Y, Z).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from medattn.data.meta import ImageMeta, orientation_codes
from medattn.errors import ReadError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def read_nifti(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    try:
        image = nib.load(str(path))
        header = image.header
        proxy = image.dataobj
        slope, intercept = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
        # unscaled data keeps the stored integer type; scaled data becomes float32
        trivial = slope == 1.0 and intercept == 0.0
        array = proxy.get_unscaled() if trivial else image.get_fdata(dtype=np.float32)
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as error:
        raise ReadError(path, f"not a readable NIfTI file ({error})") from error
    array = np.asarray(array)
    if array.dtype.byteorder not in "=|":
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim == 3:
        array = array[None]
    elif array.ndim == 4:
        array = np.moveaxis(array, -1, 0)
    else:
        raise ReadError(path, f"{array.ndim}D data is not supported (expected 2D, 3D or 4D)")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ReadError(path, f"{int((~np.isfinite(array)).sum())} NaN or infinite voxel value(s)")
    affine = np.asarray(image.affine, dtype=float)
    zooms = tuple(float(z) for z in header.get_zooms()[:3])
    meta = ImageMeta(
        spacing=zooms,
        affine=affine,
        orientation=orientation_codes(affine),
        modality="OT",
        source=str(path),
        extra={"descrip": _text(header.get("descrip"))},
    )
    return np.ascontiguousarray(array), meta


def _text(value) -> str:
    try:
        return bytes(np.asarray(value)).decode("latin-1").strip("\x00 ")
    except (TypeError, ValueError):
        return ""


def write_nifti(path: str | Path, array: np.ndarray, meta: ImageMeta) -> None:
    """Write (1, X, Y, Z) or (X, Y, Z) with the meta's affine, so it overlays the image it came from."""
    import nibabel as nib

    from medattn.runs import _atomic_write

    path = Path(path)
    data = array[0] if array.ndim == 4 and array.shape[0] == 1 else array
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a (1, X, Y, Z) or (X, Y, Z) array, got {array.shape}")
    if data.dtype == np.int64:
        data = data.astype(np.int32)  # viewers handle int64 poorly
    image = nib.Nifti1Image(np.ascontiguousarray(data), np.asarray(meta.affine, dtype=float))
    image.header.set_zooms(meta.spacing[:3])
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    _atomic_write(
        path,
        lambda tmp: nib.save(image, _with_suffix(tmp, suffix)) or Path(_with_suffix(tmp, suffix)).replace(tmp),
    )


def _with_suffix(tmp: str, suffix: str) -> str:
    return tmp + suffix  # nibabel picks compression from the name
