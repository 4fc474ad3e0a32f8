"""PNG, JPEG, TIFF and BMP through Pillow.

Grayscale gives (1, H, W) and colour (3, H, W), in the stored dtype: uint8, uint16 for 16-bit grayscale,
int32 / float32 for TIFF modes I / F. Alpha is dropped; palettes are expanded (to one channel when the
palette is gray); 1-bit images become 0/255. A multi-page TIFF becomes (C, D, H, W), one page per slice.
Pictures carry no geometry: spacing 1.0 per axis, identity affine, orientation "".
Truncated files raise: this module never sets Pillow's LOAD_TRUNCATED_IMAGES.
Pillow reduces 16-bit colour PNGs to 8 bits on load; 16-bit grayscale stays 16-bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.meta import ImageMeta, raster_meta, reading, require_finite, write_atomically
from medattn.errors import ReadError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_KEPT_MODES = {"L", "RGB", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}  # numpy takes these as they are
_GRAY_MODES = {"1", "LA", "La"}  # gray with a 1-bit depth or an alpha channel


def _frame_array(frame: Any) -> np.ndarray:
    """(C, H, W) for one decoded frame, native byte order."""
    if frame.mode in ("P", "PA"):
        # RGBA first: Pillow warns when a palette with transparency goes straight to RGB.
        rgb = np.array(frame.convert("RGBA"))[..., :3]
        gray = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        return np.ascontiguousarray(rgb[None, ..., 0] if gray else rgb.transpose(2, 0, 1))
    if frame.mode in _GRAY_MODES:
        frame = frame.convert("L")
    elif frame.mode not in _KEPT_MODES:
        frame = frame.convert("RGB")  # RGBA, CMYK, YCbCr, LAB, HSV, ...: colour, alpha dropped
    array = np.array(frame)
    if array.dtype.byteorder not in "=|":
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def read_raster(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """(C, H, W) for one picture, (C, D, H, W) for a multi-page TIFF."""
    from PIL import Image, ImageOps, ImageSequence

    path = Path(path)
    extra: dict[str, Any] = {}
    # UnidentifiedImageError is an OSError; Pillow's plugins also raise SyntaxError, struct.error and others.
    with reading(path, "not a readable image"), Image.open(path) as image:
        extra["format"] = image.format
        if getattr(image, "n_frames", 1) == 1:
            image.load()  # decode now, inside `reading`: a truncated file fails here, not later
            orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation: phone photos of skin, slides
            if orientation != 1:
                extra["exif_orientation"] = int(orientation)
            frames = [_frame_array(ImageOps.exif_transpose(image))]
        else:
            frames = []
            for frame in ImageSequence.Iterator(image):
                frame.load()
                frames.append(_frame_array(frame))
    first = frames[0]
    if any(f.shape != first.shape or f.dtype != first.dtype for f in frames):
        shapes = sorted({f"{f.shape[1:]} {f.dtype}" for f in frames})
        raise ReadError(path, f"its pages differ in size or type ({', '.join(shapes)}): not one volume")
    array = first if len(frames) == 1 else np.stack(frames, axis=1)  # (C, H, W) or (C, D, H, W)
    require_finite(array, path)
    return array, raster_meta(str(path), spatial_dims=array.ndim - 1, extra=extra)


def _png_pixels(array: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) in uint8 / uint16; labels of any integer type become uint8 when they fit."""
    data = np.asarray(array)
    if data.ndim != 3 or data.shape[0] not in (1, 3):
        raise ValueError(f"{path}: expected a (1, H, W) or (3, H, W) array, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype not in (np.uint8, np.uint16):
        if data.dtype.kind not in "iuf":
            raise ValueError(f"{path}: cannot write dtype {data.dtype} as PNG")
        if data.dtype.kind == "f" and not (np.isfinite(data).all() and np.array_equal(data, np.round(data))):
            raise ValueError(f"{path}: float pixels with fractions; scale and cast to uint8 or uint16 first")
        low, high = (data.min(), data.max()) if data.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(f"{path}: values {low}..{high} do not fit an 8-bit PNG; cast to uint16 first")
        data = data.astype(np.uint8)
    if data.dtype == np.uint16 and data.shape[0] == 3:
        raise ValueError(f"{path}: Pillow cannot write 16-bit colour PNG; write uint8 or one channel")
    return np.ascontiguousarray(data[0] if data.shape[0] == 1 else data.transpose(1, 2, 0))


def write_raster(path: str | Path, array: np.ndarray) -> None:
    """Write (1, H, W) or (3, H, W) as a lossless PNG, atomically. Labels are written as given."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: only PNG is written (lossless, so labels survive); use a .png name")
    image = Image.fromarray(_png_pixels(array, path))
    write_atomically(path, lambda tmp: image.save(tmp, format="PNG"), suffix=".png")
