"""The type an image will have once read, from its header where the format allows.

The intensity recipe is chosen from the stored type of every training image (a set that mixes uint8 and
float32 files has no one type maximum to divide by), and that is known before the set is read in full: a
NIfTI volume's header and a picture's mode say it without decoding the pixels. Each answer is the dtype
`read_image` would return for the same file (tests/test_readers.py checks it on every shared file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.nifti import NIFTI_SUFFIXES
from medattn.data.raster import RASTER_SUFFIXES

_RASTER_TYPES = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16}
_RASTER_TYPES |= {"I": np.int32, "F": np.float32}  # every other mode is read as 8-bit gray or colour


def _nifti_dtype(path: Path) -> np.dtype:
    import nibabel as nib

    image = nib.load(str(path))  # the header only; the voxels stay on disk
    stored = image.get_data_dtype()
    if stored.names:  # RGB24 / RGBA32
        return np.dtype(np.uint8)
    slope, intercept = float(getattr(image.dataobj, "slope", 1.0)), float(getattr(image.dataobj, "inter", 0.0))
    if slope != 1.0 or intercept != 0.0 or stored.kind == "f":
        return np.dtype(np.float32)
    return stored.newbyteorder("=")


def _raster_dtype(path: Path) -> np.dtype:
    from PIL import Image

    with Image.open(path) as image:  # decodes nothing until asked
        return np.dtype(_RASTER_TYPES.get(image.mode, np.uint8))


def stored_dtype(path: str | Path) -> np.dtype:
    """The dtype `read_image(path)` returns; read from the header for NIfTI and pictures, from the file else.

    A header that cannot be parsed falls back to reading the file, which raises the reader's own ReadError.
    """
    from medattn.data.readers import read_image

    path = Path(path)
    name = path.name.lower()
    peek = _nifti_dtype if name.endswith(NIFTI_SUFFIXES) else _raster_dtype if name.endswith(RASTER_SUFFIXES) else None
    if peek is not None and path.is_file():
        try:
            return peek(path)
        except Exception:  # noqa: BLE001  any parse failure: the full read below names the file and the reason
            pass
    return read_image(path)[0].dtype
