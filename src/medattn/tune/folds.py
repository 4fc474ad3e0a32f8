"""Cross-validation folds: stratified by class (where the task has classes) and, when the data has patient ids,
grouped by patient.

The folds are drawn from the source's train and validation splits pooled together (the task's `fold_pool`); a
test split stays untouched for the final score. No patient is ever in two folds of one repeat (medical images of one
patient are correlated: a split by image leaks). Each repeat shuffles with its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medattn.errors import ConfigError, DataError
from medattn.tasks.base import Pool

GROUPINGS = ("auto", "patient", "none")


@dataclass(frozen=True)
class Fold:
    repeat: int
    index: int  # which fold is held out
    train: np.ndarray  # (N_train,) indices into the pooled split
    held_out: np.ndarray  # (N_held,) indices into the pooled split

    @property
    def name(self) -> str:
        return f"fold-{self.repeat}-{self.index}"


def groups_for(pool: Pool, group: str, *, where: str) -> np.ndarray | None:
    """(N,) patient ids to group by, or None. `group` is auto (ids when the data has them), patient or none."""
    if group not in GROUPINGS:
        raise ConfigError(f"--group {group!r} is not one of {', '.join(GROUPINGS)}")
    if group == "none":
        return None
    if pool.groups is None:
        if group == "patient":
            raise DataError(
                f"--group patient: {where} has no patient ids (a CSV manifest with a patient_id column has them); "
                "use --group auto or --group none"
            )
        return None
    return np.asarray(pool.groups)


def make_folds(
    pool: Pool,
    *,
    folds: int,
    repeats: int = 1,
    seed: int = 0,
    group: str = "auto",
    class_names: list[str] | None = None,
    where: str = "the data",
) -> list[Fold]:
    """`repeats` x `folds` folds; repeat r shuffles with seed + r. Every fold holds every class (when stratified)."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")
    y = pool.strata
    groups = groups_for(pool, group, where=where)
    if y is not None:
        _check_enough(y, groups, folds=folds, class_names=class_names, where=where)
    else:
        units = pool.n if groups is None else len(set(groups.tolist()))
        if units < folds:
            unit = pool.unit if groups is None else "patients"
            raise DataError(
                f"--folds {folds}: {where} has only {units} {unit} in train+val; use --folds {units} or fewer"
            )
    result = []
    for repeat in range(repeats):
        state = seed + repeat
        if y is None and groups is None:
            splitter = KFold(n_splits=folds, shuffle=True, random_state=state)
        elif y is None:
            splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=state)
        elif groups is None:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=state)
        else:
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=state)
        for index, (train, held) in enumerate(splitter.split(np.zeros(pool.n), y, groups)):
            result.append(Fold(repeat, index, np.sort(train), np.sort(held)))
    return result


def assignment(folds: list[Fold], n: int) -> list[list[int]]:
    """Per repeat, the held-out fold of every pooled image: a compact record of the split, saved with the run."""
    table = np.full((1 + max(f.repeat for f in folds), n), -1, dtype=np.int64)
    for fold in folds:
        table[fold.repeat, fold.held_out] = fold.index
    return table.tolist()


def _check_enough(y: np.ndarray, groups: np.ndarray | None, *, folds: int, class_names, where: str) -> None:
    """Each fold must hold every class: a class needs at least `folds` images (or patients, when grouped)."""
    for label in np.unique(y):
        name = class_names[label] if class_names and label < len(class_names) else str(label)
        members = y == label
        count = int(members.sum()) if groups is None else len(set(groups[members].tolist()))
        unit = "image(s)" if groups is None else "patient(s)"
        if count < folds:
            advice = f"use --folds {count} or fewer" if count >= 2 else "cross-validation needs at least 2 per class"
            if groups is not None:
                advice += " (or --group none to split by image, which lets a patient's images straddle folds)"
            raise DataError(
                f"--folds {folds}: class {name!r} has only {count} {unit} in the train+val data of {where}; {advice}"
            )
