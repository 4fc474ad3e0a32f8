"""An upload, sniffed by its bytes (never its name or declared type) and stored in the request's own folder.

PNG, JPEG, DICOM (the DICM marker at byte 128), NIfTI-1 (plain or gzipped: the header's size 348) and npz (a zip
of arrays: `image`, or its one array, channel-first or without a channel axis) are accepted; the file is then read
by the project's one reader, so a file that merely starts like an image but cannot be read is refused as well.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np

from medattn.errors import MedattnError


class UploadRejected(MedattnError):
    """An upload the server refuses: `status` is the HTTP code (413 too large, 415 not a readable image)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


def sniff(data: bytes) -> str | None:
    """The file suffix the bytes are, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if len(data) > 132 and data[128:132] == b"DICM":
        return ".dcm"
    if data.startswith(b"PK\x03\x04"):
        return ".npz"
    head = data[:4]
    if data.startswith(b"\x1f\x8b"):
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(data[:65536])).read(348)[:4]
        except (OSError, EOFError):
            return None
        return ".nii.gz" if int.from_bytes(head, "little") == 348 or int.from_bytes(head, "big") == 348 else None
    if int.from_bytes(head, "little") == 348 or int.from_bytes(head, "big") == 348:
        return ".nii"
    return None


def _npz_as_nifti(data: bytes, folder: Path, spatial_dims: int) -> Path:
    from medattn.data.meta import ImageMeta
    from medattn.data.readers import write_image

    try:
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        names = list(arrays.files)
        array = arrays["image"] if "image" in names else arrays[names[0]] if len(names) == 1 else None
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise UploadRejected(415, f"not a readable npz: {error}") from error
    if array is None or array.dtype.kind not in "uif" or array.ndim not in (spatial_dims, spatial_dims + 1):
        raise UploadRejected(
            415, f"npz: expected one numeric array `image` of {spatial_dims} or {spatial_dims + 1} axes"
        )
    array = array if array.ndim == spatial_dims + 1 else array[None]
    path = folder / f"{folder.name}.nii.gz"  # named after the request: unique within a batch
    write_image(path, np.ascontiguousarray(array), ImageMeta(spacing=(1.0,) * spatial_dims, affine=np.eye(4)))
    return path


def store(data: bytes, folder: Path, *, max_bytes: int, spatial_dims: int) -> Path:
    """The upload written into `folder` under its sniffed type, checked readable; or UploadRejected."""
    from medattn.data.readers import read_image

    if len(data) > max_bytes:
        raise UploadRejected(413, f"upload of {len(data)} bytes is over the limit of {max_bytes}")
    suffix = sniff(data)
    if suffix is None:
        raise UploadRejected(415, "not a PNG, JPEG, DICOM, NIfTI or npz file (judged by its content)")
    if suffix == ".npz":
        path = _npz_as_nifti(data, folder, spatial_dims)
    else:
        path = folder / f"{folder.name}{suffix}"
        path.write_bytes(data)
    try:
        read_image(path)
    except MedattnError as error:
        raise UploadRejected(415, f"a {suffix} file that cannot be read: {error}") from error
    return path
