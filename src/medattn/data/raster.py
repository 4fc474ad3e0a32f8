"""PNG, JPEG, TIFF and BMP through Pillow: (1, H, W) grayscale or (3, H, W) colour, source dtype kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.meta import ImageMeta, raster_meta
from medattn.errors import ReadError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_raster(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            if image.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
                image = image.convert("L" if image.mode in ("LA", "1") else "RGB")
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ReadError(path, f"not a readable image ({error})") from error
    if array.ndim == 2:
        array = array[None]  # (1, H, W)
    elif array.ndim == 3:
        array = np.moveaxis(array, -1, 0)  # (C, H, W)
    else:
        raise ReadError(path, f"unexpected pixel array shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ReadError(path, f"{int((~np.isfinite(array)).sum())} NaN or infinite pixel value(s)")
    return np.ascontiguousarray(array), raster_meta(str(path))


def write_raster(path: str | Path, array: np.ndarray) -> None:
    """Write (1, H, W) or (3, H, W) as PNG; label maps are stored as uint8."""
    from PIL import Image

    from medattn.runs import _atomic_write

    path = Path(path)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"{path}: expected (1, H, W) or (3, H, W), got {array.shape}")
    if array.dtype not in (np.uint8, np.uint16):
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"{path}: values outside 0-255 cannot be written as 8-bit PNG")
        array = array.astype(np.uint8)
    pixels = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    _atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
