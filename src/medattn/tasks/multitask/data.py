"""The multi-task loop's data: segmentation's cases in memory (tasks/segment/data.py: checked, resampled and
standardised as the card says) and each per-image head's targets, encoded for the loss.

A classification head's classes are the distinct values of its column over the training and validation images
(numbers in numeric order); `classification:foreground` has the classes absent / present, from each mask. A
regression head's values are standardised with the training images' mean and standard deviation (kept in the
card, so predictions come back in the column's units). A missing label is -1 (classification) or NaN
(regression): masked out of that head's loss and scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medattn.errors import DataError
from medattn.tasks.multitask.heads import CLASSIFICATION, REGRESSION, Head

FOREGROUND_CLASSES = ["absent", "present"]


@dataclass
class HeadSpec:
    """What one per-image head needs to encode labels and decode outputs (its part of the card)."""

    head: Head
    class_names: list[str] | None = None  # classification
    mean: float = 0.0  # regression: the training values' mean and standard deviation
    std: float = 1.0

    @property
    def outputs(self) -> int:
        return len(self.class_names) if self.class_names is not None else 1

    def to_card(self) -> dict:
        card = {"kind": self.head.kind, "column": self.head.column}
        if self.class_names is not None:
            card["class_names"] = list(self.class_names)
        else:
            card.update({"mean": self.mean, "std": self.std})
        return card

    @classmethod
    def from_card(cls, card: dict) -> HeadSpec:
        return cls(
            Head(card["kind"], card["column"]), card.get("class_names"), card.get("mean", 0.0), card.get("std", 1.0)
        )

    def encode(self, cells: list[str], masks=None, *, where: str) -> np.ndarray:
        """(N,) int64 class indices (-1: no label) or float64 standardised values (NaN: no label)."""
        if self.head.derived:
            return np.array([int(bool((np.asarray(m) > 0).any())) for m in masks], dtype=np.int64)
        if self.class_names is not None:
            index = {name: i for i, name in enumerate(self.class_names)}
            unknown = sorted({c for c in cells if c and c not in index})
            if unknown:
                raise DataError(
                    f"{where}: {self.head.name} holds {', '.join(map(repr, unknown))}, not among the classes the run "
                    f"was trained on ({', '.join(self.class_names)})"
                )
            return np.array([index[c] if c else -1 for c in cells], dtype=np.int64)
        values = np.array([float(c) if c else np.nan for c in cells], dtype=np.float64)
        return (values - self.mean) / self.std


def _ordered(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def head_specs(heads: list[Head], train_cases, val_cases, *, where: str) -> list[HeadSpec]:
    """A spec per per-image head, from the training (and, for class names, validation) cells."""
    specs = []
    for head in heads:
        if head.kind == CLASSIFICATION:
            if head.derived:
                specs.append(HeadSpec(head, list(FOREGROUND_CLASSES)))
                continue
            seen = {c.values[head.column] for c in train_cases if c.values[head.column]}
            names = _ordered(seen | {c.values[head.column] for c in val_cases if c.values[head.column]})
            if len(seen) < 2:
                raise DataError(
                    f"{where}: {head.name} takes {len(seen)} value(s) in the training images: nothing to learn"
                )
            specs.append(HeadSpec(head, names))
        elif head.kind == REGRESSION:
            values = np.array([float(c.values[head.column]) for c in train_cases if c.values[head.column]])
            if len(values) < 2 or values.std() == 0:
                raise DataError(f"{where}: {head.name} takes one value in the training images: nothing to learn")
            specs.append(HeadSpec(head, None, float(values.mean()), float(values.std())))
    return specs


def encode_split(specs: list[HeadSpec], cases, masks, *, where: str) -> dict[str, np.ndarray]:
    """{head name: (N,) encoded labels} for the cases of a split (masks: their label maps, for derived heads)."""
    return {
        spec.head.name: spec.encode([c.values.get(spec.head.column, "") for c in cases], masks, where=where)
        for spec in specs
    }
