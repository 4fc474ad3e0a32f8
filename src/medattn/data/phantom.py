"""Procedural phantoms: tissue-like images with organs and lesions, 2D or 3D, deterministic by seed.

The embedded data behind `make demo` and the fast tests (numpy only, no torch). One anatomy gives
- `image` (C, *spatial) float32 in [0, 1]: the first C of the contrasts "t1", "t2", "pd";
- `contrasts`: the same anatomy under each intensity mapping (paired data for multimodal work);
- `mask` (*spatial) uint8, `boxes` (K, 2 * spatial_dims) float32 and `label` (1 if a lesion is present).

Label map (`LABELS`): 0 background (air, and body tissue outside organs), 1 organ, 2 lesion. Change single
entries with `label_map`, e.g. `label_map={"body": 3}` gives body tissue its own label.

Boxes are inclusive voxel indices in array axis order, [min_0, ..., min_{d-1}, max_0, ..., max_{d-1}], so
`mask[min_0:max_0 + 1, ...]` holds the whole lesion. (torchvision's 2D (x1, y1, x2, y2) with exclusive ends
is `boxes[:, [1, 0, 3, 2]] + [0, 0, 1, 1]`.)

An image is built as: body and 2-3 organs (soft-edged ellipsoids, one intensity per tissue and contrast) ->
lesions (soft blobs inside organs, brighter or darker than their organ) -> smooth texture (a coarse field
plus a lesion-scale one that makes lesion look-alikes) -> bias field -> Rician noise -> clip to [0, 1].
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medattn.data.phantom_shapes import ORGAN_KINDS, Anatomy, PhantomStyle, bounding_box, draw_anatomy, rician

LABELS: dict[str, int] = {"background": 0, "body": 0, "organ": 1, "lesion": 2}


@dataclass(frozen=True)
class Contrast:
    """What each tissue looks like in one acquisition (intensities before bias and noise)."""

    body: float
    organs: tuple[float, ...]  # one per organ type (ORGAN_KINDS)
    lesion: float  # multiplies the lesion's contrast; negative flips it (bright in t1, dark in t2)
    texture: float

    def __post_init__(self) -> None:
        if len(self.organs) != ORGAN_KINDS:
            raise ValueError(f"a contrast needs {ORGAN_KINDS} organ intensities, got {len(self.organs)}")


CONTRASTS: dict[str, Contrast] = {
    "t1": Contrast(body=0.40, organs=(0.62, 0.78, 0.52), lesion=1.0, texture=1.0),
    "t2": Contrast(body=0.55, organs=(0.30, 0.45, 0.85), lesion=-1.4, texture=1.3),
    "pd": Contrast(body=0.50, organs=(0.64, 0.57, 0.71), lesion=0.6, texture=0.8),
}


# Classification presets: lesion contrast small against texture and noise, so the task takes a real model.
# Calibrated in 2D: a small CNN (800 training images of 32x32, 12 epochs) reaches a held-out AUC of about
# 0.99 (easy), 0.96 (medium) and 0.79 (hard); at 28x28 0.98, 0.94 and 0.75. 3D is harder at the same preset
# (a tiny 3D CNN, 800 volumes of 24^3, 10 epochs: 0.87 on easy, chance on medium), so use "easy" for 3D
# demos. Image mean and std carry no label information at any preset.
DIFFICULTY: dict[str, PhantomStyle] = {
    "easy": PhantomStyle(
        noise=0.03, texture=0.03, detail=0.3, lesion_contrast=(0.28, 0.38), lesion_radius=(0.11, 0.17)
    ),
    "medium": PhantomStyle(
        noise=0.03, texture=0.035, detail=0.45, lesion_contrast=(0.22, 0.32), lesion_radius=(0.10, 0.16)
    ),
    "hard": PhantomStyle(
        noise=0.035, texture=0.04, detail=0.6, lesion_contrast=(0.16, 0.25), lesion_radius=(0.09, 0.15)
    ),
}


@dataclass
class Phantom:
    image: np.ndarray  # (C, *spatial) float32 in [0, 1]
    mask: np.ndarray  # (*spatial) uint8, labels from LABELS / label_map
    boxes: np.ndarray  # (K, 2 * spatial_dims) float32, inclusive voxel indices [min..., max...]
    label: int  # 1 if any lesion, else 0
    contrasts: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (*spatial) float32, same anatomy


def _render(anatomy: Anatomy, contrast: Contrast, rng: np.random.Generator, *, style: PhantomStyle) -> np.ndarray:
    """One contrast of an anatomy: tissues, lesions, texture, bias, noise. (*spatial) float32 in [0, 1]."""
    image = anatomy.body * np.float32(contrast.body)
    values = [contrast.organs[o.kind] + o.jitter for o in anatomy.organs]
    for organ, value in zip(anatomy.organs, values, strict=True):
        image += organ.weight * (np.float32(value) - image)
    for lesion in anatomy.lesions:
        value = values[lesion.organ] + contrast.lesion * lesion.delta
        image += lesion.weight * (np.float32(value) - image)
    image += np.float32(style.texture * contrast.texture) * anatomy.texture * anatomy.body
    image = rician(rng, image * anatomy.bias, sigma=style.noise)
    return np.clip(image, 0.0, 1.0, out=image).astype(np.float32, copy=False)


def _mask(anatomy: Anatomy, labels: Mapping[str, int]) -> np.ndarray:
    owner = anatomy.owner
    mask = np.full(owner.shape, labels["background"], dtype=np.uint8)
    mask[owner == -1] = labels["body"]
    mask[owner >= 0] = labels["organ"]
    for lesion in anatomy.lesions:
        mask[lesion.hard] = labels["lesion"]
    return mask


def _label_map(label_map: Mapping[str, int] | None) -> dict[str, int]:
    labels = dict(LABELS)
    for key, value in (label_map or {}).items():
        if key not in LABELS:
            raise ValueError(f"label_map: unknown key {key!r}; expected some of {sorted(LABELS)}")
        if not 0 <= int(value) <= 255:
            raise ValueError(f"label_map[{key!r}] = {value}: labels are stored as uint8 (0-255)")
        labels[key] = int(value)
    return labels


def _check(*, spatial_dims: int, size: int, seed: int, n: int = 0) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if size < 8:
        raise ValueError(f"size must be at least 8 voxels, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")


def make_phantom(
    *,
    spatial_dims: int = 2,
    size: int = 64,
    seed: int = 0,
    lesions: int | None = None,
    channels: int = 1,
    style: PhantomStyle | None = None,
    label_map: Mapping[str, int] | None = None,
) -> Phantom:
    """One phantom with every annotation.

    `lesions=None` draws 0-3 lesions from the seed (fewer where a small phantom has no room); an explicit
    count is exact or a ValueError.
    """
    _check(spatial_dims=spatial_dims, size=size, seed=seed)
    if not 1 <= channels <= len(CONTRASTS):
        names = ", ".join(CONTRASTS)
        raise ValueError(f"channels must be 1-{len(CONTRASTS)} (the contrasts {names}), got {channels}")
    if lesions is not None and lesions < 0:
        raise ValueError(f"lesions must be >= 0 or None, got {lesions}")
    labels, style = _label_map(label_map), style or PhantomStyle()
    rng = np.random.default_rng(seed)
    n_lesions = int(rng.integers(0, 4)) if lesions is None else lesions
    anatomy = draw_anatomy(
        rng, spatial_dims=spatial_dims, size=size, style=style, n_lesions=n_lesions, exact=lesions is not None
    )
    n_lesions = len(anatomy.lesions)
    contrasts = {name: _render(anatomy, c, rng, style=style) for name, c in CONTRASTS.items()}
    boxes = np.zeros((n_lesions, 2 * spatial_dims), dtype=np.float32)
    for row, lesion in zip(boxes, anatomy.lesions, strict=True):
        row[:] = bounding_box(lesion.hard)
    image = np.stack([contrasts[name] for name in list(CONTRASTS)[:channels]])  # (C, *spatial)
    return Phantom(image=image, mask=_mask(anatomy, labels), boxes=boxes, label=int(n_lesions > 0), contrasts=contrasts)


# Seed entropy is [stream, seed, split(, sample)], keeping label permutations, samples and splits apart.
_LABEL_STREAM, _SAMPLE_STREAM = 1, 2
_SEGMENTATION_SPLIT = 3  # classification uses splits 0-2 (train, val, test)


def _classification(
    *, n: int, spatial_dims: int, size: int, num_classes: int, seed: int, difficulty: str, split: int
) -> tuple[np.ndarray, np.ndarray]:
    _check(spatial_dims=spatial_dims, size=size, seed=seed, n=n)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if difficulty not in DIFFICULTY:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTY)}, got {difficulty!r}")
    style = DIFFICULTY[difficulty]
    order = np.random.default_rng([_LABEL_STREAM, seed, split]).permutation(n)
    labels = (order % num_classes).astype(np.int64)  # balanced to within one sample per class
    images = np.empty((n, 1) + (size,) * spatial_dims, dtype=np.float32)
    for i, label in enumerate(labels):
        rng = np.random.default_rng([_SAMPLE_STREAM, seed, split, i])
        anatomy = draw_anatomy(rng, spatial_dims=spatial_dims, size=size, style=style, n_lesions=int(label))
        images[i, 0] = _render(anatomy, CONTRASTS["t1"], rng, style=style)
    return images, labels


def make_classification_set(
    *,
    n: int,
    spatial_dims: int = 2,
    size: int = 32,
    num_classes: int = 2,
    seed: int = 0,
    difficulty: str = "medium",
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, *spatial) float32 and labels (N,) int64, classes balanced; t1 contrast.

    The class is the number of lesions: with 2 classes, lesion absent (0) or present (1); with more,
    class c has exactly c lesions. Sample i depends only on (seed, i), not on n.
    """
    return _classification(
        n=n,
        spatial_dims=spatial_dims,
        size=size,
        num_classes=num_classes,
        seed=seed,
        difficulty=difficulty,
        split=0,
    )


def make_segmentation_set(
    *,
    n: int,
    spatial_dims: int = 2,
    size: int = 64,
    seed: int = 0,
    label_map: Mapping[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, *spatial) float32 (t1) and masks (N, *spatial) uint8; 0-3 lesions per image."""
    _check(spatial_dims=spatial_dims, size=size, seed=seed, n=n)
    labels, style = _label_map(label_map), PhantomStyle()
    images = np.empty((n, 1) + (size,) * spatial_dims, dtype=np.float32)
    masks = np.empty((n,) + (size,) * spatial_dims, dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([_SAMPLE_STREAM, seed, _SEGMENTATION_SPLIT, i])
        anatomy = draw_anatomy(
            rng,
            spatial_dims=spatial_dims,
            size=size,
            style=style,
            n_lesions=int(rng.integers(0, 4)),
            exact=False,
        )
        images[i, 0] = _render(anatomy, CONTRASTS["t1"], rng, style=style)
        masks[i] = _mask(anatomy, labels)
    return images, masks


def save_medmnist_npz(
    path: str | os.PathLike,
    *,
    n_train: int,
    n_val: int,
    n_test: int,
    spatial_dims: int = 2,
    size: int = 28,
    num_classes: int = 2,
    seed: int = 0,
    difficulty: str = "medium",
) -> Path:
    """Write a classification phantom in the MedMNIST .npz layout, atomically; returns the path.

    Keys {train,val,test}_images, uint8 (N, H, W) or (N, D, H, W) = round(255 * image), and
    {train,val,test}_labels, uint8 (N, 1), exactly as in the official files. Splits are independent draws.
    """
    path = Path(path)
    arrays = {}
    for split, (name, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        images, labels = _classification(
            n=n,
            spatial_dims=spatial_dims,
            size=size,
            num_classes=num_classes,
            seed=seed,
            difficulty=difficulty,
            split=split,
        )
        arrays[f"{name}_images"] = np.round(images[:, 0] * 255).astype(np.uint8)
        arrays[f"{name}_labels"] = labels[:, None].astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez_compressed(file, **arrays)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


__all__ = [
    "CONTRASTS",
    "DIFFICULTY",
    "LABELS",
    "Contrast",
    "Phantom",
    "PhantomStyle",
    "make_classification_set",
    "make_phantom",
    "make_segmentation_set",
    "save_medmnist_npz",
]
