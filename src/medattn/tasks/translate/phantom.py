"""Paired phantom contrasts for translation tests and examples: T1 and PD of one anatomy as the source, T2 as the
target (the lesion flips from bright to dark, so a global intensity map cannot do it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_pairs(*, n: int, spatial_dims: int = 2, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(source (N, 2, *S) float32: t1 and pd, target (N, 1, *S) float32: t2), all in [0, 1]."""
    from medattn.data.phantom import make_phantom

    sources, targets = [], []
    for i in range(n):
        phantom = make_phantom(spatial_dims=spatial_dims, size=size, seed=seed * 100_003 + i)
        sources.append(np.stack([phantom.contrasts["t1"], phantom.contrasts["pd"]]))
        targets.append(phantom.contrasts["t2"][None])
    return np.stack(sources), np.stack(targets)


def save_pairs_npz(path: str | Path, *, n: int, spatial_dims: int = 2, size: int = 32, seed: int = 0) -> Path:
    """An npz with `source`, `target`, and `patient_id` (every image its own subject), written atomically."""
    from medattn.runs import write_atomically

    source, target = make_pairs(n=n, spatial_dims=spatial_dims, size=size, seed=seed)
    patients = np.array([f"p{i:04d}" for i in range(n)])
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, source=source, target=target, patient_id=patients)

    write_atomically(path, write, suffix=".npz")
    return path
