"""A regression phantom: images whose target is the area of their organ, in pixels per 1000 of the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABEL = 1  # the organ (lesions inside it carry label 2 and are left out): its area is the target


def save_burden_npz(path: str | Path, *, n_train: int, n_val: int, n_test: int, size: int = 32, seed: int = 0) -> Path:
    """Write {train,val,test}_images uint8 (N, H, W) and {train,val,test}_labels float32 (N, 1), atomically."""
    from medattn.data.phantom import make_segmentation_set
    from medattn.runs import write_atomically

    arrays = {}
    for offset, (name, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        images, masks = make_segmentation_set(n=n, spatial_dims=2, size=size, seed=seed + 1000 * offset)
        arrays[f"{name}_images"] = (images[:, 0] * 255).clip(0, 255).astype(np.uint8)
        burden = (masks == LABEL).reshape(n, -1).mean(axis=1) * 1000.0
        arrays[f"{name}_labels"] = burden.astype(np.float32)[:, None]
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    write_atomically(path, write, suffix=".npz")
    return path
