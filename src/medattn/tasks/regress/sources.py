"""Continuous targets per image: a MedMNIST-layout .npz with continuous labels, or a CSV manifest.

- npz: {train,val,test}_images and {train,val,test}_labels of shape (N,) or (N, T) holding any finite numbers;
- CSV: `path` plus one column per target (named by `data.targets`, e.g. `--targets age`; by default every
  column that is not path, patient_id or split), with optional `patient_id` and `split`.
Missing val/test splits are carved with a seed, grouped by patient when ids exist and stratified by quintile
of the first target, so every split spans the range of values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medattn.data.manifest import SPLITS, csv_header, read_manifest
from medattn.data.splits import Split, carve_splits
from medattn.errors import DataError

RESERVED = ("path", "patient_id", "split", "label")
BINS = 5  # quantile bins of the first target used as strata


@dataclass
class TargetSource:
    path: str
    kind: str  # npz | csv
    target_names: list[str]
    splits: dict[str, Split]  # labels (N, T) float32
    modality: str = "auto"
    notes: list[str] = field(default_factory=list)


def looks_like_targets(path: Path) -> bool:
    """An npz whose labels are not whole numbers, or a CSV with a path column and no label column."""
    if path.suffix.lower() == ".npz" and path.is_file():
        from medattn.data.medmnist import labels_are_integers

        try:
            return not labels_are_integers(path)
        except Exception:  # a damaged file: let the task that opens it report why
            return False
    if path.suffix.lower() == ".csv" and path.is_file():
        header = csv_header(path)
        return "path" in header and "label" not in header and bool(set(header) - set(RESERVED))
    return False


def open_targets(path: str | Path, *, targets: list[str] | None = None) -> TargetSource:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    if path.suffix.lower() == ".npz":
        if targets is not None:
            raise DataError(f"{path}: --targets names CSV columns; an npz holds its targets in *_labels")
        return _open_npz(path)
    if path.suffix.lower() == ".csv":
        return _open_csv(path, targets)
    raise DataError(f"{path}: expected an .npz with continuous labels or a CSV with a path column and target columns")


def _open_npz(path: Path) -> TargetSource:
    from medattn.data.medmnist import medmnist_splits, read_medmnist

    available = medmnist_splits(path)
    if "train" not in available:
        raise DataError(f"{path}: no train split (found: {', '.join(available) or 'none'})")
    splits = {}
    for name in available:
        images, values = read_medmnist(path, name, continuous=True)
        splits[name] = Split(labels=values, images=images)
    width = splits["train"].labels.shape[1]
    names = ["target"] if width == 1 else [f"target_{i}" for i in range(width)]
    return TargetSource(str(path), "npz", names, splits)


def _open_csv(path: Path, targets: list[str] | None) -> TargetSource:
    rows = read_manifest(path, required=("path",), files=("path",))
    columns = [c for c in rows[0] if c not in (*RESERVED, "line")]
    names = list(targets) if targets else columns
    if not names:
        raise DataError(f"{path}: no target column (columns other than {', '.join(RESERVED)}); name one with --targets")
    absent = [n for n in names if n not in rows[0]]
    if absent:
        raise DataError(f"{path}: no column {', '.join(map(repr, absent))} (found: {', '.join(columns)})")
    values = np.zeros((len(rows), len(names)), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            try:
                values[i, j] = float(row[name])
            except ValueError:
                raise DataError(f"{path} line {row['line']}: {name} = {row[name]!r} is not a number") from None
            if not np.isfinite(values[i, j]):
                raise DataError(f"{path} line {row['line']}: {name} = {row[name]!r} is not finite")
    patients = [r.get("patient_id") or "" for r in rows] if "patient_id" in rows[0] else None
    splits = {}
    for split in SPLITS:
        index = [i for i, r in enumerate(rows) if r["split"] == split]
        if index:
            splits[split] = Split(
                labels=values[index],
                paths=[rows[i]["path"][0] for i in index],
                patient_ids=None if patients is None else [patients[i] for i in index],
            )
    if "train" not in splits:
        raise DataError(f"{path}: no rows in the train split")
    return TargetSource(str(path), "csv", names, splits)


def target_bins(values: np.ndarray) -> np.ndarray | None:
    """(N,) quintile of the first target, or None when too few values or too few distinct ones to bin."""
    first = np.asarray(values)[:, 0]
    if len(first) < 2 * BINS or len(np.unique(first)) < BINS:
        return None
    edges = np.quantile(first, np.linspace(0, 1, BINS + 1)[1:-1])
    return np.searchsorted(edges, first, side="right").astype(np.int64)


def ensure_splits(source: TargetSource, *, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    return carve_splits(
        source.splits,
        strata=lambda split: target_bins(split.labels),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        where=source.path,
    )
