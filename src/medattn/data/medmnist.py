"""MedMNIST .npz files (official splits): images channel-first, labels (N, L) int64.

The files store 2D grayscale as (N, H, W), 2D colour as (N, H, W, 3) and 3D as (N, D, H, W); this module
returns (N, C, H, W) or (N, C, D, H, W) in the stored dtype (uint8 for every official file).
np.load always runs with allow_pickle=False: an .npz from the internet must not run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.meta import reading, require_finite
from medattn.errors import ReadError

SPLITS = ("train", "val", "test")


def _open(path: Path) -> Any:
    if not path.is_file():
        raise ReadError(path, "no such file")
    with reading(path, "not a valid .npz archive"):
        archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        # A plain .npy loads as one array: MedMNIST needs the named train/val/test arrays of an .npz.
        raise ReadError(path, "holds a single array (.npy), not an .npz archive of named splits")
    return archive


def _available(names: list[str]) -> list[str]:
    return [s for s in SPLITS if f"{s}_images" in names and f"{s}_labels" in names]


def medmnist_splits(path: str | Path) -> list[str]:
    """The splits present in the file, among train / val / test, in that order."""
    path = Path(path)
    with _open(path) as archive:
        return _available(list(archive.files))


def _channel_first(images: np.ndarray, path: Path, split: str) -> np.ndarray:
    if images.ndim == 3:  # (N, H, W): 2D grayscale
        return images[:, None]
    if images.ndim == 4 and images.shape[-1] == 3:  # (N, H, W, 3): 2D colour, channels last on disk
        return np.moveaxis(images, -1, 1)
    if images.ndim == 4:  # (N, D, H, W): 3D grayscale
        return images[:, None]
    raise ReadError(path, f"{split}_images has shape {images.shape}; expected (N, H, W), (N, H, W, 3) or (N, D, H, W)")


def read_medmnist(path: str | Path, split: str, *, continuous: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, H, W) or (N, C, D, H, W) in the stored dtype and labels (N, L) int64.

    With `continuous`, the labels are targets: any finite numbers, returned (N, L) float32.
    """
    path = Path(path)
    with _open(path) as archive:
        names = list(archive.files)
        keys = (f"{split}_images", f"{split}_labels")
        if not set(keys) <= set(names):
            found = _available(names)
            raise ReadError(
                path, f"no {split!r} split ({keys[0]} and {keys[1]}); splits in the file: {', '.join(found) or 'none'}"
            )
        with reading(path, f"the {split} arrays cannot be loaded"):
            images, labels = archive[keys[0]], archive[keys[1]]  # decompressed and CRC-checked here
    if len(images) != len(labels):
        raise ReadError(path, f"{split}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ReadError(path, f"{split}: the split is empty")
    if labels.ndim > 2:
        raise ReadError(path, f"{split}_labels has shape {labels.shape}; expected (N,) or (N, L)")
    if labels.dtype.kind not in "biuf":
        raise ReadError(path, f"{split}_labels has dtype {labels.dtype}; expected integers")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ReadError(path, f"{split}_labels holds NaN or infinite values")
    if not continuous and labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise ReadError(path, f"{split}_labels holds non-integer values")
    if images.dtype.kind not in "biuf":
        raise ReadError(path, f"{split}_images has dtype {images.dtype}; expected numbers")
    require_finite(images, path)
    images = _channel_first(images, path, split)
    kind = np.float32 if continuous else np.int64
    return np.ascontiguousarray(images), labels.reshape(len(labels), -1).astype(kind)


def labels_are_integers(path: str | Path) -> bool:
    """Whether the train labels of an npz hold whole numbers only (classes) rather than continuous targets."""
    with _open(Path(path)) as archive:
        if "train_labels" not in archive.files:
            return True
        try:
            labels = archive["train_labels"]
        except Exception:  # whatever the damage, read_medmnist reports it with the file's name
            return True
    return labels.dtype.kind in "biu" or bool(np.array_equal(labels, np.round(labels)))
