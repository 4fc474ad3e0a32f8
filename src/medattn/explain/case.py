"""One image of a data set to explain, as a task reads it for `medattn explain --data`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medattn.data.meta import ImageMeta


@dataclass
class ExplainCase:
    name: str  # a file stem or `split-index`, unique within the split
    image: np.ndarray  # (C, *S) as read from disk
    meta: ImageMeta | None  # None for images held in an array file (MedMNIST .npz)
    truth: str  # the true label, value or mask summary, for titles
    mask: np.ndarray | None = None  # (*S) bool lesion mask on the image's grid, where the data has one
    label: int | None = None  # the true class, where there is one (correct / wrong in reports)
    context: dict = field(default_factory=dict)  # what the task adds to the case's row (a MIL instance's weight)
