"""Pictures of translations as plain 8-bit mosaics (PIL, no plotting library): the validation grid written each
epoch, the test cases beside the baselines, and predict's side-by-side view. A volume shows its middle slice
along the last axis. Each column keeps one intensity window: sources their own range, targets and predictions
the training targets' stored range, so a prediction brighter than its target looks brighter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GAP = 2  # pixels between tiles


def middle_slice(image: np.ndarray) -> np.ndarray:
    """(C, *S) -> (H, W): the first channel, and the middle slice of a volume."""
    plane = np.asarray(image, dtype=np.float64)[0]
    return plane[..., plane.shape[-1] // 2] if plane.ndim == 3 else plane


def tile(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """(C, *S) -> (H, W) uint8 between low and high."""
    plane = middle_slice(image)
    span = high - low if high > low else 1.0
    return (np.clip((plane - low) / span, 0, 1) * 255).astype(np.uint8)


def own_range(image: np.ndarray) -> tuple[float, float]:
    plane = middle_slice(image)
    return float(plane.min()), float(plane.max())


def mosaic(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Rows of uint8 tiles (H, W), each row padded to the tallest tile, into one (H', W') picture."""
    height = max(t.shape[0] for row in rows for t in row)
    width = max(sum(t.shape[1] + GAP for t in row) for row in rows)
    canvas = np.full((len(rows) * (height + GAP), width), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        x = 0
        for picture in row:
            top = r * (height + GAP)
            canvas[top : top + picture.shape[0], x : x + picture.shape[1]] = picture
            x += picture.shape[1] + GAP
    return canvas


def write_png(path: Path, canvas: np.ndarray) -> Path:
    from PIL import Image

    from medattn.runs import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: Image.fromarray(canvas).save(tmp, format="PNG"), suffix=".png")
    return path


def case_row(source: np.ndarray, images: list[np.ndarray], *, low: float, high: float) -> list[np.ndarray]:
    """One row: the source (its own window), then each of `images` in the target window."""
    return [tile(source, *own_range(source)), *(tile(image, low, high) for image in images)]
