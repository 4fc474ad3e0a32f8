"""Reading a segmentation case and checking its mask against its image; preparing both for a model.

Checks, each an error naming the files: the mask has one channel and the image's spatial shape; where
both carry geometry (NIfTI, DICOM) the same affine within AFFINE_TOLERANCE (a mismatch is an error, never
a silent resample); integer labels in [0, number of classes). Channel files of one case must agree in
shape and affine too. Masks stored as 0/255 pictures read as 0/1 (`binary_255`).

Preparation, the same in training, evaluation and prediction: each channel through the intensity mode
(data/preprocess.py), then resampled to the target spacing (linear for images, nearest neighbour for
masks), then standardised with the training set's mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medattn.data.meta import ImageMeta
from medattn.errors import DataError
from medattn.tasks.segment.sources import Case

AFFINE_TOLERANCE = (1e-3, 1e-2)  # direction cosines x zooms; translation in mm


@dataclass
class LoadedCase:
    case: Case
    image: np.ndarray  # (C, *spatial) as stored
    mask: np.ndarray  # (*spatial) int64 labels (after 0/255 -> 0/1 when binary_255)
    meta: ImageMeta  # the (first) image's

    @property
    def spatial_dims(self) -> int:
        return self.image.ndim - 1


def _where(case: Case) -> str:
    return f"image {', '.join(case.images)} and mask {case.mask}"


def affines_match(a: np.ndarray, b: np.ndarray) -> bool:
    linear, shift = AFFINE_TOLERANCE
    return bool(np.allclose(a[:3, :3], b[:3, :3], rtol=0, atol=linear) and np.allclose(a[:3, 3], b[:3, 3], atol=shift))


def _check_geometry(first: ImageMeta, other: ImageMeta, shape, other_shape, *, what: str, case: Case) -> None:
    if tuple(shape) != tuple(other_shape):
        raise DataError(f"{_where(case)}: {what} has spatial shape {list(other_shape)}, the image {list(shape)}")
    if not affines_match(first.affine, other.affine):
        raise DataError(
            f"{_where(case)}: {what}'s affine differs from the image's (a mask must lie on the image's grid; "
            f"it is not resampled):\n  image {np.round(first.affine, 4).tolist()}\n"
            f"  {what} {np.round(other.affine, 4).tolist()}"
        )


def read_case(case: Case, *, binary_255: bool = False) -> LoadedCase:
    """The image (channels from every file concatenated) and the mask, checked against each other."""
    from medattn.data.readers import one_slice_as_2d, read_image

    arrays, meta = [], None
    for path in case.images:
        array, file_meta = read_image(path)
        array = one_slice_as_2d(array)
        if meta is None:
            meta = file_meta
        else:
            _check_geometry(
                meta, file_meta, arrays[0].shape[1:], array.shape[1:], what=f"channel file {path}", case=case
            )
        arrays.append(array)
    image = arrays[0] if len(arrays) == 1 else np.concatenate([a.astype(np.float32) for a in arrays])
    if not case.mask:  # an image without a mask (per-image labels only, tasks/multitask/): all background
        return LoadedCase(case, image, np.zeros(image.shape[1:], dtype=np.int64), meta)
    raw, mask_meta = read_image(case.mask)
    raw = one_slice_as_2d(raw)
    if raw.shape[0] == 3 and np.array_equal(raw[0], raw[1]) and np.array_equal(raw[0], raw[2]):
        raw = raw[:1]  # a gray mask saved as RGB
    if raw.shape[0] != 1:
        raise DataError(f"{_where(case)}: the mask has {raw.shape[0]} channels; expected one label map")
    _check_geometry(meta, mask_meta, image.shape[1:], raw.shape[1:], what="mask", case=case)
    labels = raw[0]
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise DataError(f"{_where(case)}: the mask holds non-integer values; expected integer labels")
    if labels.size and labels.min() < 0:
        raise DataError(f"{_where(case)}: the mask holds negative labels ({labels.min():g})")
    labels = labels.astype(np.int64)
    if binary_255:
        labels = np.where(labels == 255, 1, labels)
    return LoadedCase(case, image, labels, meta)


def mask_values(loaded: Sequence[LoadedCase]) -> set[int]:
    values: set[int] = set()
    for item in loaded:
        values |= {int(v) for v in np.unique(item.mask)}
    return values


def check_labels(item: LoadedCase, num_classes: int, class_names: Sequence[str] | None = None) -> None:
    top = int(item.mask.max()) if item.mask.size else 0
    if top >= num_classes:
        found = sorted(int(v) for v in np.unique(item.mask) if v >= num_classes)
        declared = f" ({', '.join(class_names)})" if class_names else ""
        raise DataError(
            f"{_where(item.case)}: label(s) {found} outside the {num_classes} declared classes 0..{num_classes - 1}"
            f"{declared}"
        )
