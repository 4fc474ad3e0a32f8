"""Real network inputs from a run's own data: what the parity check and INT8 calibration feed the network.

Images come through the task's `explain_cases` (the run's data split as training split it) and are prepared by
the card's input specification exactly as inference prepares them; a patch model gets the middle patch of each.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np

from medattn.engine.inputs import InputSpec
from medattn.errors import DataError


def centre_patch(x: np.ndarray, patch) -> np.ndarray:
    """(C, *patch): the middle of a prepared image (C, *S), padded with each channel's minimum where smaller."""
    shape = x.shape[1:]
    fill = x.reshape(len(x), -1).min(axis=1).reshape(-1, *[1] * len(shape))
    out = np.broadcast_to(fill, (len(x), *patch)).astype(np.float32)
    src, dst = [], []
    for size, want in zip(shape, patch, strict=True):
        start = max((size - want) // 2, 0)
        length = min(size, want)
        offset = max((want - size) // 2, 0)
        src.append(slice(start, start + length))
        dst.append(slice(offset, offset + length))
    out[(slice(None), *dst)] = x[(slice(None), *src)]
    return out


def real_inputs(run: Path, card: dict, *, split: str, limit: int) -> np.ndarray:
    """(N <= limit, C, *input) float32 network inputs from the run's `split` (slices of volumes for 2D models)."""
    from medattn.tasks import task_for_run

    spec = InputSpec.from_card(card)
    rows: list[np.ndarray] = []
    for case in islice(task_for_run(run).explain_cases(run, data=None, split=split), limit):
        _, x = spec.batch(case.image, case.meta, where=case.name)  # (1 or slices, C, *S)
        x = np.asarray(x, dtype=np.float32)
        if spec.sliding:
            x = np.stack([centre_patch(item, spec.patch) for item in x])
        rows.extend(x[len(x) // 2 : len(x) // 2 + 1] if len(x) > 1 else x)  # a volume's middle slice
    if not rows:
        raise DataError(f"{run}: no {split} images to check the export on")
    return np.stack(rows[:limit])
