"""NIfTI-1 and NIfTI-2 (.nii, .nii.gz) through nibabel: axes kept as stored, affine kept as is.

A 3D image (X, Y, Z) becomes (1, X, Y, Z); a 4D image (X, Y, Z, T) puts its fourth axis first as
channels, (T, X, Y, Z) (higher axes are folded into that channel axis too); 2D data gets a unit Z axis.
`meta.affine` is nibabel's own (sform, else qform), so it maps (X, Y, Z) indices to RAS+ mm exactly as
nibabel does, and `write_nifti` inverts all of this: a mask written with a read image's meta overlays it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.meta import ImageMeta, orientation_codes, reading, require_finite, write_atomically
from medattn.errors import ReadError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_NIFTI1_MAX_DIM = 32767  # NIfTI-1 stores dims as int16; bigger arrays need NIfTI-2


def _load(path: Path) -> tuple[Any, np.ndarray, float, float]:
    """The nibabel image, its stored (unscaled) array read in full, and its scale slope and intercept."""
    import nibabel as nib

    with reading(path, "not a readable NIfTI file"):
        # mmap=False: read now, so a truncated file fails here and no memory map outlives the call.
        image = nib.load(str(path), mmap=False)
        if not isinstance(image, nib.Nifti1Image):  # Nifti2Image subclasses Nifti1Image
            raise ReadError(path, f"nibabel opened it as {type(image).__name__}, not NIfTI")
        proxy = image.dataobj
        stored = np.asarray(proxy.get_unscaled())
        # nibabel already turned unset (0 or NaN) scl_slope into 1 and scl_inter into 0.
        slope, intercept = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    return image, stored, slope, intercept


def read_nifti(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """(C, X, Y, Z) in the stored integer type when scl_slope is trivial, float32 otherwise."""
    path = Path(path)
    image, stored, slope, intercept = _load(path)
    if stored.dtype.names:  # RGB24 / RGBA32 are structured: one field per colour, folded into channels
        stored = np.stack([stored[name] for name in stored.dtype.names], axis=-1)
    if stored.dtype.kind == "c":
        raise ReadError(path, f"complex data ({stored.dtype}) is not supported")
    if stored.ndim < 2:
        raise ReadError(path, f"{stored.ndim}D data: expected 2D to 7D")
    if stored.dtype.byteorder not in "=|":  # big-endian files: convert once, here, for torch's sake
        stored = stored.astype(stored.dtype.newbyteorder("="))
    scaled = slope != 1.0 or intercept != 0.0
    if scaled:
        array = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    elif stored.dtype.kind == "f" and stored.dtype != np.float32:
        require_finite(stored, path, what="voxel")  # before the cast, so the count is of the stored data
        array = stored.astype(np.float32)
    else:
        array = stored
    if array.ndim == 2:
        array = array[:, :, None]
    array = np.moveaxis(array.reshape(*array.shape[:3], -1), -1, 0)  # (C, X, Y, Z)
    require_finite(array, path, what="voxel")
    header = image.header
    affine = np.asarray(image.affine, dtype=np.float64)
    zooms = [float(z) for z in header.get_zooms()[:3]]
    zooms += [1.0] * (3 - len(zooms))
    if min(zooms) <= 0:  # broken pixdim: the affine still knows the voxel size
        zooms = [float(n) for n in np.linalg.norm(affine[:3, :3], axis=0)]
    extra: dict[str, Any] = {
        "descrip": _text(header.get("descrip")),
        "sform_code": int(header["sform_code"]),
        "qform_code": int(header["qform_code"]),
        "stored_dtype": str(header.get_data_dtype()),
        "rescale": {"slope": slope, "intercept": intercept, "applied": scaled},
        "nifti_version": 2 if int(header["sizeof_hdr"]) == 540 else 1,
    }
    if len(image.shape) >= 4:
        extra["channels_from"] = "4th axis" if len(image.shape) == 4 else "axes 4 and up"
    meta = ImageMeta(
        spacing=tuple(zooms),
        affine=affine,
        orientation=orientation_codes(affine),
        modality="OT",
        source=str(path),
        extra=extra,
    )
    return np.ascontiguousarray(array), meta


def _text(value: Any) -> str:
    try:
        return bytes(np.asarray(value)).decode("latin-1").strip("\x00 ")
    except (TypeError, ValueError):
        return ""


def _storable(data: np.ndarray, path: Path) -> np.ndarray:
    """A dtype NIfTI and common viewers handle, losing nothing."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype == np.float16:
        return data.astype(np.float32)  # NIfTI has no half floats
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8 and data.size:
        # argmax gives int64 labels; many viewers choke on 64-bit integers, so shrink when lossless.
        small = np.int32 if data.dtype.kind == "i" else np.uint32
        info = np.iinfo(small)
        if info.min <= data.min() and data.max() <= info.max:
            return data.astype(small)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"{path}: refusing to write NaN or infinite values (the reader would reject them)")
    if data.dtype.kind not in "iuf":
        raise ValueError(f"{path}: cannot store dtype {data.dtype} in NIfTI")
    return data


def write_nifti(path: str | Path, array: np.ndarray, meta: ImageMeta) -> None:
    """Write a (C, *spatial) or bare spatial array with `meta.affine`, atomically.

    Labels are written as given (never resampled here); int64 becomes int32 when the values fit.
    One channel gives a 3D file, several a 4D file with channels last (what `read_nifti` undoes).
    """
    import nibabel as nib

    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise ValueError(f"{path}: a NIfTI file name ends in .nii or .nii.gz")
    data = np.asarray(array)
    dims = meta.spatial_dims
    if data.ndim == dims:
        data = data[None]  # a bare label map: one channel
    if data.ndim != dims + 1:
        raise ValueError(
            f"{path}: meta describes {dims} spatial axes, so the array must be (C, {dims} axes) "
            f"or ({dims} axes); got shape {data.shape}"
        )
    data = np.moveaxis(data, 0, -1)  # (*spatial, C)
    if dims == 2:
        data = data[:, :, None, :]  # a 2D image is one slice thick; meta.affine's third column is the normal
    if data.shape[-1] == 1:
        data = data[..., 0]
    data = _storable(np.asarray(data), path)
    image_type = nib.Nifti2Image if max(data.shape) > _NIFTI1_MAX_DIM else nib.Nifti1Image
    image = image_type(data, meta.affine, dtype=data.dtype)
    # Codes > 0 make every viewer use the affine; keep the source's codes when it had them.
    image.set_sform(meta.affine, code=int(meta.extra.get("sform_code", 0)) or 1)
    image.set_qform(meta.affine, code=int(meta.extra.get("qform_code", 0)) or 1)  # qform drops shears
    image.header.set_xyzt_units(xyz="mm")
    image.header["descrip"] = b"medattn"
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    write_atomically(path, lambda tmp: nib.save(image, str(tmp)), suffix=suffix)
