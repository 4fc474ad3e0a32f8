"""Heat maps drawn over their image with matplotlib: one PNG per 2D image, a slice mosaic per volume.

Each has the colour map at `alpha` over the image (gray, or the three channels as RGB), a colour bar, and the
prediction in the title. Maps are shown rectified and scaled to [0, 1] (the raw values go to .npy / NIfTI).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

CMAP, ALPHA, MOSAIC_SLICES = "jet", 0.45, 16


def display_image(image: np.ndarray) -> np.ndarray:
    """(*S) gray or (*S, 3) RGB in [0, 1] from (C, *S), clipped at the 1st and 99th percentiles per channel."""
    channels = image[:3] if image.shape[0] == 3 else image[:1]
    out = []
    for channel in channels.astype(np.float32):
        low, high = np.percentile(channel, [1, 99])
        out.append(np.clip((channel - low) / max(high - low, 1e-6), 0, 1))
    return out[0] if len(out) == 1 else np.stack(out, axis=-1)


def unit_map(heat: np.ndarray) -> np.ndarray:
    heat = np.clip(np.nan_to_num(heat.astype(np.float32)), 0, None)
    top = float(heat.max())
    return heat / top if top > 0 else heat


def _draw(ax, picture: np.ndarray, heat: np.ndarray):
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
    shown = ax.imshow(heat, cmap=CMAP, alpha=ALPHA, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_axis_off()
    return shown


def overlay_png(path: Path, image: np.ndarray, heat: np.ndarray, *, title: str) -> Path:
    """One 2D image (C, H, W) with its map (H, W)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=100)
    shown = _draw(ax, display_image(image), unit_map(heat))
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="importance (scaled)")
    ax.set_title(title, fontsize=8, wrap=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def mosaic_png(path: Path, volume: np.ndarray, heat: np.ndarray, *, title: str, axis: int = -1) -> Path:
    """Up to 16 evenly spaced slices of a volume (C, X, Y, Z) along `axis`, with the map's slices over them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis = axis % 3
    count = volume.shape[1 + axis]
    picks = np.unique(np.linspace(0, count - 1, min(MOSAIC_SLICES, count)).round().astype(int))
    cols = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 0.8, 1.9 * rows + 0.6), dpi=100, squeeze=False)
    scaled, shown = unit_map(heat), None
    for ax, index in zip(axes.flat, picks, strict=False):
        picture = display_image(np.take(volume, index, axis=1 + axis))
        shown = _draw(ax, picture, np.take(scaled, index, axis=axis))
        ax.set_title(f"slice {index}", fontsize=7)
    for ax in axes.flat[len(picks) :]:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes, fraction=0.03, pad=0.02, label="importance (scaled)")
    fig.suptitle(title, fontsize=8)
    fig.savefig(path)
    plt.close(fig)
    return path
