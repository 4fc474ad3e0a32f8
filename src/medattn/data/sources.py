"""Labelled dataset sources for classification: a MedMNIST .npz, a class-per-folder tree, a CSV manifest.

Each becomes a `LabelledSource`: per split, either in-memory images (npz) or file paths (folder, CSV),
with labels, optional patient ids, the task and the class names. Missing validation or test splits are
carved from train, stratified and grouped by patient when patient ids exist (no patient in two splits).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medattn.data.readers import SUPPORTED_SUFFIXES
from medattn.errors import DataError

SPLITS = ("train", "val", "test")

# Facts about the official MedMNIST files: class names and modality (from medmnist's INFO table).
MEDMNIST_INFO = {
    "breastmnist": (["malignant", "normal, benign"], "ultrasound"),
    "pneumoniamnist": (["normal", "pneumonia"], "xray"),
    "adrenalmnist3d": (["normal", "hyperplasia"], "ct"),
    "retinamnist": (["0", "1", "2", "3", "4"], "rgb"),
}


@dataclass
class Split:
    labels: np.ndarray  # (N,) int64 class index, or (N, L) float32 0/1 for multilabel
    images: np.ndarray | None = None  # (N, C, *spatial) when held in memory
    paths: list[str] | None = None  # image files when read lazily
    patient_ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Split:
        def pick(seq):
            return None if seq is None else [seq[i] for i in index]

        return Split(
            labels=self.labels[index],
            images=None if self.images is None else self.images[index],
            paths=pick(self.paths),
            patient_ids=pick(self.patient_ids),
        )


@dataclass
class LabelledSource:
    path: str
    kind: str  # medmnist | folder | csv
    task: str
    class_names: list[str]
    splits: dict[str, Split]
    modality: str = "auto"
    notes: list[str] = field(default_factory=list)

    def class_counts(self, split: str) -> list[int]:
        labels = self.splits[split].labels
        if labels.ndim == 2:
            return [int(v) for v in labels.sum(axis=0)]
        return [int(v) for v in np.bincount(labels, minlength=len(self.class_names))]


def open_source(path: str | Path, *, task: str | None = None, class_names: list[str] | None = None) -> LabelledSource:
    """Open PATH (an .npz, a folder or a CSV) and infer the task unless `task` is given."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    if path.is_dir():
        source = _open_folder(path)
    elif path.suffix.lower() == ".npz":
        source = _open_npz(path)
    elif path.suffix.lower() == ".csv":
        source = _open_csv(path)
    else:
        raise DataError(f"{path}: expected an .npz file, a folder of class folders, or a CSV manifest")
    if class_names is not None:
        if len(class_names) != len(source.class_names):
            raise DataError(
                f"{path}: {len(class_names)} class names given but the labels have {len(source.class_names)} classes"
            )
        source.class_names = list(class_names)
    if task is not None:
        _check_task(source, task)
        source.task = task
    return source


def _check_task(source: LabelledSource, task: str) -> None:
    multilabel = source.splits["train"].labels.ndim == 2
    if (task == "multilabel") != multilabel:
        found = "one label column per class (multi-label)" if multilabel else "one class per image"
        raise DataError(f"{source.path}: --task {task} does not fit the labels, which have {found}")
    if task == "binary" and len(source.class_names) != 2:
        raise DataError(f"{source.path}: --task binary needs 2 classes, found {len(source.class_names)}")


def _infer_task(labels: np.ndarray, n_classes: int) -> str:
    if labels.ndim == 2:
        return "multilabel"
    return "binary" if n_classes == 2 else "multiclass"


def _open_npz(path: Path) -> LabelledSource:
    from medattn.data.medmnist import medmnist_splits, read_medmnist

    available = medmnist_splits(path)
    if "train" not in available:
        raise DataError(f"{path}: no train split (found: {', '.join(available) or 'none'})")
    splits = {}
    for name in available:
        images, labels = read_medmnist(path, name)
        splits[name] = Split(labels=labels, images=images)
    train_labels = splits["train"].labels
    if train_labels.shape[1] > 1:
        n_classes = train_labels.shape[1]
        for split in splits.values():
            split.labels = split.labels.astype(np.float32)
    else:
        n_classes = int(max(int(s.labels.max()) for s in splits.values())) + 1
        for split in splits.values():
            split.labels = split.labels[:, 0].astype(np.int64)
    for name, split in splits.items():
        if split.labels.min() < 0:
            raise DataError(f"{path}: {name}_labels has negative values")
    names, modality = MEDMNIST_INFO.get(path.stem.lower().split("_")[0], (None, "auto"))
    if names is None or len(names) != n_classes:
        names = [str(i) for i in range(n_classes)]
    task = _infer_task(splits["train"].labels, n_classes)
    return LabelledSource(str(path), "medmnist", task, names, splits, modality=modality)


def _image_files(folder: Path) -> list[Path]:
    """Image files directly in a folder; a sub-folder of DICOM slices counts as one image (a series)."""
    items = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir() or child.name.lower().endswith(SUPPORTED_SUFFIXES):
            items.append(child)
    return items


def _open_folder(root: Path) -> LabelledSource:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise DataError(f"{root}: empty folder (expected one sub-folder per class, optionally under train/val/test)")
    split_dirs = [p for p in subdirs if p.name in SPLITS]
    layout = {p.name: p for p in split_dirs} if split_dirs else {"train": root}
    class_names = sorted({c.name for d in layout.values() for c in d.iterdir() if c.is_dir()})
    if not class_names:
        raise DataError(f"{root}: no class folders found")
    splits = {}
    for name, folder in layout.items():
        paths, labels = [], []
        for index, class_name in enumerate(class_names):
            class_dir = folder / class_name
            files = _image_files(class_dir) if class_dir.is_dir() else []
            paths += [str(f) for f in files]
            labels += [index] * len(files)
        if not paths:
            raise DataError(f"{folder}: no images found in its class folders ({', '.join(class_names)})")
        splits[name] = Split(labels=np.asarray(labels, dtype=np.int64), paths=paths)
    task = _infer_task(splits["train"].labels, len(class_names))
    return LabelledSource(str(root), "folder", task, class_names, splits)


def _open_csv(path: Path) -> LabelledSource:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read CSV: {error}") from error
    if not rows:
        raise DataError(f"{path}: the CSV has no rows")
    columns = set(rows[0])
    if not {"path", "label"} <= columns:
        raise DataError(f"{path}: the CSV needs columns 'path' and 'label' (found: {', '.join(sorted(columns))})")
    missing = []
    for line, row in enumerate(rows, start=2):
        file = Path(row["path"])
        file = file if file.is_absolute() else path.parent / file
        row["path"] = str(file)
        if not file.exists():
            missing.append(f"line {line}: {file}")
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{path}: {len(missing)} listed file(s) do not exist: {shown}")
    multilabel = any(";" in r["label"] for r in rows)
    raw = [
        [s.strip() for s in r["label"].split(";") if s.strip()] if multilabel else [r["label"].strip()] for r in rows
    ]
    names = sorted({n for labels in raw for n in labels}, key=_natural_key)
    if any(not labels for labels in raw):
        raise DataError(f"{path}: some rows have an empty label")
    position = {n: i for i, n in enumerate(names)}
    if multilabel:
        labels = np.zeros((len(rows), len(names)), dtype=np.float32)
        for i, row_labels in enumerate(raw):
            labels[i, [position[n] for n in row_labels]] = 1.0
    else:
        labels = np.asarray([position[r[0]] for r in raw], dtype=np.int64)
    has_split = "split" in columns and any(r["split"] for r in rows)
    patients = [r["patient_id"] for r in rows] if "patient_id" in columns else None
    splits = {}
    for name in SPLITS if has_split else ("train",):
        index = np.asarray([i for i, r in enumerate(rows) if (r["split"] if has_split else "train") == name], dtype=int)
        if len(index):
            splits[name] = Split(
                labels=labels[index],
                paths=[rows[i]["path"] for i in index],
                patient_ids=None if patients is None else [patients[i] for i in index],
            )
    unknown = {r["split"] for r in rows} - set(SPLITS) if has_split else set()
    if unknown:
        raise DataError(f"{path}: unknown split value(s) {', '.join(sorted(unknown))} (use train, val, test)")
    if "train" not in splits:
        raise DataError(f"{path}: no rows in the train split")
    task = _infer_task(labels, len(names))
    return LabelledSource(str(path), "csv", task, names, splits)


def _natural_key(name: str):
    return (0, float(name), name) if name.replace(".", "", 1).lstrip("-").isdigit() else (1, 0.0, name)


def ensure_splits(source: LabelledSource, *, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Carve missing val/test splits out of train; grouped by patient when ids exist. Returns notes."""
    notes = []
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if name in source.splits or fraction <= 0:
            continue
        train = source.splits["train"]
        keep, held = _stratified_group_split(train, fraction, seed)
        source.splits["train"], source.splits[name] = train.subset(keep), train.subset(held)
        grouped = " grouped by patient" if train.patient_ids is not None else ""
        notes.append(f"{name} split: {len(held)} images carved from train ({fraction:.0%}, stratified{grouped})")
    return notes


def _stratified_group_split(split: Split, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit

    n = len(split)
    strata = split.labels if split.labels.ndim == 1 else split.labels.argmax(axis=1)
    if n < 4:
        raise DataError(f"only {n} training images: too few to carve validation and test splits")
    if split.patient_ids is not None:
        groups = np.asarray(split.patient_ids)
        folds = max(2, round(1 / fraction))
        if len(set(groups)) >= folds and np.bincount(strata).min() >= folds:
            fold = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            return next(fold.split(np.zeros(n), strata, groups))
        return next(
            GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(np.zeros(n), groups=groups)
        )
    if np.bincount(strata).min() < 2:
        raise DataError("a class has fewer than 2 images: cannot carve a stratified validation split")
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    return next(splitter.split(np.zeros(n), strata))
