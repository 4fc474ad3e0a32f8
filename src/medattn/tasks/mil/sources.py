"""Bags for multiple instance learning: a CSV `path,label,<bag column>[,patient_id][,split]`, one row per image
(a slice, a patch, a volume), the rows sharing a bag column's value forming one bag with one label.

Every row of a bag must give the same label and split (an error names the bag and the lines that disagree).
Missing validation or test splits are carved by bag, stratified by label and grouped by patient (a bag column
other than patient_id, e.g. a study, keeps one patient's bags in one split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medattn.data.manifest import csv_header, read_manifest
from medattn.data.splits import Split, carve_splits
from medattn.errors import DataError
from medattn.tasks.classify.sources import _natural_key


@dataclass
class Bag:
    name: str  # the bag column's value
    paths: list[str]  # one image file (or ;-joined channel files' first) per instance
    label: int
    patient: str
    lines: list[int]  # CSV lines, for errors


@dataclass
class BagSource:
    path: str
    column: str  # the bag column
    labels: str  # binary | multiclass
    class_names: list[str]
    splits: dict[str, list[Bag]]
    modality: str = "auto"
    notes: list[str] = field(default_factory=list)
    kind: str = "csv"

    def class_counts(self, split: str) -> list[int]:
        labels = [bag.label for bag in self.splits[split]]
        return [int(v) for v in np.bincount(np.asarray(labels, dtype=int), minlength=len(self.class_names))]

    def instances(self, split: str) -> Split:
        """Every image of the split's bags as one flat Split (bag order, then row order), each with its bag's
        label: what the image readers and intensity planning take."""
        bags = self.splits[split]
        paths = [p for bag in bags for p in bag.paths]
        labels = np.asarray([bag.label for bag in bags for _ in bag.paths], dtype=np.int64)
        return Split(labels=labels, paths=paths, patient_ids=[bag.patient for bag in bags for _ in bag.paths])


def looks_like_bags(path: Path, column: str | None) -> bool:
    header = csv_header(path) if path.suffix.lower() == ".csv" else []
    return column is not None and {"path", "label", column} <= set(header)


def open_bags(path: str | Path, *, column: str | None) -> BagSource:
    path = Path(path)
    if column is None:
        raise DataError(f"{path}: name the bag column with --bag (data.bag), e.g. --bag patient_id")
    if not path.is_file() or path.suffix.lower() != ".csv":
        raise DataError(f"{path}: expected a CSV path,label,{column} with one row per image of a bag")
    rows = read_manifest(path, required=("path", "label", column), files=("path",))
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        if not row[column]:
            raise DataError(f"{path} line {row['line']}: the bag column {column!r} is empty")
        if not row["label"]:
            raise DataError(f"{path} line {row['line']}: empty label")
        grouped.setdefault(row[column], []).append(row)
    names = sorted({row["label"] for row in rows}, key=_natural_key)
    if len(names) < 2:
        raise DataError(f"{path}: every bag has the label {names[0]!r}: nothing to learn")
    position = {name: i for i, name in enumerate(names)}
    splits: dict[str, list[Bag]] = {}
    for name, members in grouped.items():
        lines = [row["line"] for row in members]
        for key in ("label", "split"):
            values = sorted({row[key] for row in members})
            if len(values) > 1:
                raise DataError(
                    f"{path}: bag {name!r} ({column}) has rows with different {key}s {values} (lines {lines[:6]}): "
                    f"a bag has one {key}"
                )
        patient = members[0].get("patient_id") or name
        bag = Bag(name, [row["path"][0] for row in members], position[members[0]["label"]], patient, lines)
        splits.setdefault(members[0]["split"], []).append(bag)
    if "train" not in splits:
        raise DataError(f"{path}: no bags in the train split")
    labels = "binary" if len(names) == 2 else "multiclass"
    return BagSource(str(path), column, labels, names, splits)


def ensure_splits(source: BagSource, *, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Carve missing val/test splits out of train, by bag: stratified by label, grouped by patient."""
    return carve_splits(
        source.splits,
        strata=lambda bags: np.asarray([bag.label for bag in bags], dtype=int),
        groups=lambda bags: [bag.patient for bag in bags],
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        where=source.path,
        unit="bags",
    )
