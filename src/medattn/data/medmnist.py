"""MedMNIST .npz files (official splits): images channel-first, labels (N, L). Never unpickles."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from medattn.errors import ReadError

SPLITS = ("train", "val", "test")


def _open(path: Path):
    if not path.is_file():
        raise ReadError(path, "no such file")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ReadError(path, f"not a valid .npz archive ({error})") from error


def medmnist_splits(path: str | Path) -> list[str]:
    """The splits present in the file, among train / val / test."""
    path = Path(path)
    with _open(path) as archive:
        names = set(archive.files)
    return [s for s in SPLITS if f"{s}_images" in names and f"{s}_labels" in names]


def read_medmnist(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, H, W) or (N, C, D, H, W) in the stored dtype, labels (N, L) int64."""
    path = Path(path)
    with _open(path) as archive:
        keys = (f"{split}_images", f"{split}_labels")
        if not set(keys) <= set(archive.files):
            found = [s for s in SPLITS if f"{s}_images" in archive.files]
            raise ReadError(
                path,
                f"no {split!r} split (keys {keys[0]}, {keys[1]}); splits found: {', '.join(found) or 'none'}",
            )
        try:
            images, labels = archive[keys[0]], archive[keys[1]]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise ReadError(path, f"{split} arrays are damaged ({error})") from error
    if len(images) != len(labels):
        raise ReadError(path, f"{split}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ReadError(path, f"{split}: the split is empty")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise ReadError(path, f"{split}: {int((~np.isfinite(images)).sum())} NaN or infinite pixel value(s)")
    labels = labels.reshape(len(labels), -1)
    if labels.dtype.kind not in "uib" and not np.all(np.mod(labels, 1) == 0):
        raise ReadError(path, f"{split}: labels are not integers")
    # MedMNIST stores 2D grayscale (N, H, W), 2D colour (N, H, W, 3) and 3D (N, D, H, W).
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        images = np.moveaxis(images, -1, 1)
    elif images.ndim == 4:
        images = images[:, None]
    elif images.ndim != 5:
        raise ReadError(path, f"{split}: image array has unexpected shape {images.shape}")
    return np.ascontiguousarray(images), labels.astype(np.int64)
