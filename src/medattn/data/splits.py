"""Splits of a dataset held as arrays or file lists, and carving the missing ones (seeded).

A validation or test split the data does not declare is carved from train: grouped by patient when every
image has a patient id (no patient in two splits), and stratified by the strata the task gives (classes, or
bins of a continuous target) where the counts allow it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medattn.data.manifest import SPLITS
from medattn.errors import DataError

__all__ = ["SPLITS", "Split", "carve_splits", "holdout"]


@dataclass
class Split:
    labels: np.ndarray  # (N,) int64 class, (N, L) float32 0/1 multi-label, or (N, T) float32 targets
    images: np.ndarray | None = None  # (N, C, *spatial) when held in memory
    paths: list[str] | None = None  # image files when read lazily
    patient_ids: list[str] | None = None
    masks: list[str] | None = None  # a lesion mask file per image ("" for none), for localisation scores

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int):
        """(array (C, *spatial), meta or None, where) of one image: from memory, or read from its file."""
        if self.images is not None:
            return self.images[index], None, f"image {index}"
        from medattn.data.readers import read_image

        return (*read_image(self.paths[index]), self.paths[index])

    def subset(self, index: np.ndarray) -> Split:
        def pick(seq):
            return None if seq is None else [seq[i] for i in index]

        return Split(
            labels=self.labels[index],
            images=None if self.images is None else self.images[index],
            paths=pick(self.paths),
            patient_ids=pick(self.patient_ids),
            masks=pick(self.masks),
        )

    @staticmethod
    def join(a: Split, b: Split) -> Split:
        def both(x, y):
            return None if x is None or y is None else [*x, *y]

        return Split(
            labels=np.concatenate([a.labels, b.labels]),
            images=None if a.images is None else np.concatenate([a.images, b.images]),
            paths=both(a.paths, b.paths),
            patient_ids=both(a.patient_ids, b.patient_ids),
            masks=both(a.masks, b.masks),
        )


def carve_splits(
    splits: dict,
    *,
    strata: Callable | None = None,
    groups: Callable | None = None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    where: str,
    unit: str = "images",
) -> list[str]:
    """Carve missing test, then val, splits out of train in place; for every task. Returns notes for the card.

    A split is a `Split` or a list of cases: `strata(split)` gives what to stratify on (or None), `groups(split)`
    the patient ids to keep together (or None); by default a Split's own patient ids.
    """
    notes = []
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if name in splits or fraction <= 0:
            continue
        train = splits["train"]
        ids = groups(train) if groups is not None else train.patient_ids
        classes = strata(train) if strata is not None else None
        keep, held, how = holdout(classes, ids, fraction, seed, where=where, n=len(train), unit=unit)
        if isinstance(train, list):
            splits["train"], splits[name] = [train[i] for i in keep], [train[i] for i in held]
        else:
            splits["train"], splits[name] = train.subset(keep), train.subset(held)
        notes.append(f"{name} split: {len(held)} {unit} carved from train ({fraction:.0%}, {how})")
    return notes


def holdout(
    strata: np.ndarray | None, groups, fraction: float, seed: int, *, where: str, n: int, unit: str = "images"
) -> tuple[np.ndarray, np.ndarray, str]:
    """(kept, held-out) indices of n items holding out `fraction`, stratified and grouped where possible; and how."""
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit

    if n < 4:
        raise DataError(f"{where}: only {n} training {unit}: too few to carve validation and test splits")
    zeros = np.zeros(n)
    if groups is not None:
        groups = np.asarray(groups)
        folds = max(2, round(1 / fraction))
        if strata is not None and len(set(groups)) >= folds and np.bincount(strata).min() >= folds:
            fold = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            keep, held = next(fold.split(zeros, strata, groups))
            return keep, held, "stratified, grouped by patient"
        if len(set(groups)) < 3:
            raise DataError(f"{where}: only {len(set(groups))} patients: too few to carve a split by patient")
        keep, held = next(
            GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(zeros, groups=groups)
        )
        return keep, held, "grouped by patient"
    if strata is None:
        keep, held = next(ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(zeros))
        return keep, held, "random"
    if np.bincount(strata).min() < 2:
        raise DataError(f"{where}: a class has fewer than 2 {unit}: cannot carve a stratified validation split")
    keep, held = next(StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(zeros, strata))
    return keep, held, "stratified"
