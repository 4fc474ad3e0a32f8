"""NumPy twins of the few tensor operations inference needs, so an ONNX Runtime backend runs without PyTorch.

Each mirrors the PyTorch call the torch path makes (named in its docstring), closely enough that the ONNX path
gives the same answer to float32 rounding: resizing as `torch.nn.functional.interpolate` (area when shrinking,
linear with align_corners=False otherwise), softmax and sigmoid, and MONAI's Gaussian-blended sliding window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from medattn.data.preprocess import Intensity, to_unit
from medattn.errors import DataError


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _linear_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Linear resampling along one axis, as interpolate(mode="linear", align_corners=False) computes it."""
    n = x.shape[axis]
    src = np.maximum((np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n - 1)
    high = np.minimum(low + 1, n - 1)
    weight = (src - low).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = size
    weight = weight.reshape(shape)
    return np.take(x, low, axis=axis) * (1 - weight) + np.take(x, high, axis=axis) * weight


def _area_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Box means along one axis, as adaptive average pooling (interpolate's `area`) takes them."""
    n = x.shape[axis]
    cells = [np.take(x, range(i * n // size, -(-(i + 1) * n // size)), axis=axis).mean(axis=axis) for i in range(size)]
    return np.stack(cells, axis=axis)


def interpolate(x: np.ndarray, size: Sequence[int], *, mode: str) -> np.ndarray:
    """(N, C, *S) float32 resized to `size` with mode "linear" (bi/trilinear) or "area", axis by axis."""
    step = _area_axis if mode == "area" else _linear_axis
    for offset, target in enumerate(size):
        if x.shape[2 + offset] != target:
            x = step(x, 2 + offset, int(target))
    return x.astype(np.float32, copy=False)


def resize(batch: np.ndarray, size: Sequence[int] | None) -> np.ndarray:
    """data/preprocess.py's `resize` on arrays: area when every axis shrinks, linear otherwise."""
    if size is None or tuple(batch.shape[2:]) == tuple(size):
        return batch
    shrinking = all(s <= t for s, t in zip(size, batch.shape[2:], strict=True))
    return interpolate(batch, size, mode="area" if shrinking else "linear")


def prepare_array(image: np.ndarray, intensity: Intensity, size, *, spacing=None, target=None) -> np.ndarray:
    """(C, *S') float32 as data/tensors.py's `prepare_image` (whole image, resized to `size`) or, with `spacing`,
    data/resample.py's `resample_image` (each channel's intensity mode, then linear resampling to `target` mm)."""
    from medattn.data.meta import require_finite
    from medattn.data.resample import resampled_shape, unit_image

    require_finite(image, "input")
    if spacing is None:
        unit = resize(np.ascontiguousarray(to_unit(image, intensity))[None], size)
    else:
        unit = np.ascontiguousarray(unit_image(image, intensity))[None]
        wanted = resampled_shape(unit.shape[2:], spacing, target)
        unit = interpolate(unit, wanted, mode="linear") if wanted != tuple(unit.shape[2:]) else unit
    return ((unit[0] - np.float32(intensity.mean)) / np.float32(intensity.std)).astype(np.float32)


def to_unit_array(split, intensity: Intensity, size, *, where: str, progress=iter) -> np.ndarray:
    """data/tensors.py's `to_unit_tensor` on arrays: (N, C, *S) float32 after the intensity mode and resize."""
    from medattn.data.meta import require_finite
    from medattn.data.readers import one_slice_as_2d, read_image

    if split.images is not None:
        require_finite(split.images, where)
        step = 4096  # bounded peak memory for large sets
        chunks = [to_unit(split.images[i : i + step], intensity) for i in range(0, len(split.images), step)]
        return np.concatenate([resize(chunk, size) for chunk in chunks])
    rows = []
    for path in progress(split.paths):
        array = one_slice_as_2d(read_image(path)[0])
        require_finite(array, path)
        rows.append(resize(to_unit(array, intensity)[None], size)[0])
    shapes = {row.shape for row in rows}
    if len(shapes) > 1:
        raise DataError(f"{where}: images differ in shape ({sorted(shapes)}); set data.size (--size) to resize them")
    return np.stack(rows)


def whole_image(net, x: np.ndarray, *, transform: Callable, batch_size: int, flips=None) -> np.ndarray:
    """engine/inferers.py's `whole_image` with `net` an array-in, array-out network."""
    views = [None, *(flips or [])]
    chunks = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        outputs = [transform(net(batch if axis is None else np.flip(batch, axis))) for axis in views]
        chunks.append(np.mean(outputs, axis=0))
    return np.concatenate(chunks).astype(np.float64)


def gaussian_map(patch: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """MONAI's Gaussian importance map for blending windows (compute_importance_map): a separable Gaussian
    centred on the patch, sigma = sigma_scale * patch, floored at 1e-3."""
    weights = np.ones((), np.float32)
    for n in patch:
        offsets = np.arange(n, dtype=np.float32) - (n - 1) / 2.0
        weights = np.multiply.outer(weights, np.exp(offsets**2 / (-2 * (sigma_scale * n) ** 2)))
    return np.maximum(weights, max(float(weights.min()), 1e-3)).astype(np.float32)


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Window origins along one axis, as MONAI's dense_patch_slices places them."""
    if patch >= size:
        return [0]
    interval = max(int(patch * (1 - overlap)), 1)
    count = next(d for d in range(math.ceil(size / interval)) if d * interval + patch >= size) + 1
    return [min(i * interval, size - patch) for i in range(count)]


def sliding_window(net, x: np.ndarray, *, patch, transform: Callable, overlap: float, batch: int, flips=None):
    """engine/inferers.py's `sliding_window` on arrays: (K, *S) float32 for a standardised image x (C, *S)."""
    shape = tuple(x.shape[1:])
    padded = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))
    if padded != shape:  # pad with each channel's minimum, what training padded with
        fill = x.reshape(len(x), -1).min(axis=1).reshape(-1, *[1] * len(shape))
        grown = np.broadcast_to(fill, (len(x), *padded)).copy()
        grown[(slice(None), *(slice(0, s) for s in shape))] = x
        x = grown
    weights = gaussian_map(patch)
    grids = np.meshgrid(*[window_starts(s, p, overlap) for s, p in zip(padded, patch, strict=True)], indexing="ij")
    origins = list(zip(*(g.ravel() for g in grids), strict=True))
    total = None
    for axis in [None, *(flips or [])]:
        view = x if axis is None else np.flip(x, axis)
        out, norm = None, np.zeros(padded, np.float32)
        for first in range(0, len(origins), batch):
            chunk = origins[first : first + batch]
            boxes = [tuple(slice(o, o + p) for o, p in zip(origin, patch, strict=True)) for origin in chunk]
            logits = net(np.stack([view[(slice(None), *box)] for box in boxes]))  # (B, K, *patch)
            if out is None:
                out = np.zeros((logits.shape[1], *padded), np.float32)
            for box, window in zip(boxes, logits, strict=True):
                out[(slice(None), *box)] += window * weights
                norm[box] += weights
        probs = transform((out / norm)[None])[0]
        probs = probs if axis is None else np.flip(probs, axis)
        total = probs if total is None else total + probs
    mean = total / (1 + len(flips or []))
    return np.ascontiguousarray(mean[(slice(None), *(slice(0, s) for s in shape))], dtype=np.float32)
