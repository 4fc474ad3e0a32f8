"""Labelled dataset sources for classification: a MedMNIST .npz, a class-per-folder tree (with patient ids from
an optional manifest.csv of file,patient_id), a CSV manifest.

Each becomes a `LabelledSource`: per split, either in-memory images (npz) or file paths (folder, CSV),
with labels, optional patient ids, the label type and the class names. Missing validation or test splits are
carved from train, stratified and grouped by patient when patient ids exist (no patient in two splits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medattn.data.manifest import SPLITS, read_manifest
from medattn.data.readers import SUPPORTED_SUFFIXES
from medattn.data.splits import Split, carve_splits
from medattn.errors import DataError

# Facts about the official MedMNIST files: class names and modality (from medmnist's INFO table).
MEDMNIST_INFO = {
    "breastmnist": (["malignant", "normal, benign"], "ultrasound"),
    "pneumoniamnist": (["normal", "pneumonia"], "xray"),
    "adrenalmnist3d": (["normal", "hyperplasia"], "ct"),
    "retinamnist": (["0", "1", "2", "3", "4"], "rgb"),
}


@dataclass
class LabelledSource:
    path: str
    kind: str  # medmnist | folder | csv
    labels: str  # binary | multiclass | multilabel | ordinal
    class_names: list[str]
    splits: dict[str, Split]
    modality: str = "auto"
    notes: list[str] = field(default_factory=list)

    def class_counts(self, split: str) -> list[int]:
        labels = self.splits[split].labels
        if labels.ndim == 2:
            return [int(v) for v in labels.sum(axis=0)]
        return [int(v) for v in np.bincount(labels, minlength=len(self.class_names))]


def open_source(path: str | Path, *, labels: str | None = None, class_names: list[str] | None = None) -> LabelledSource:
    """Open PATH (an .npz, a folder or a CSV) and infer the label type unless `labels` is given."""
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
    if labels is not None:
        _check_labels(source, labels)
        source.labels = labels
    return source


def _check_labels(source: LabelledSource, labels: str) -> None:
    multilabel = source.splits["train"].labels.ndim == 2
    if (labels == "multilabel") != multilabel:
        found = "one label column per class (multi-label)" if multilabel else "one class per image"
        raise DataError(f"{source.path}: --labels {labels} does not fit the labels, which have {found}")
    if labels == "binary" and len(source.class_names) != 2:
        raise DataError(f"{source.path}: --labels binary needs 2 classes, found {len(source.class_names)}")


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
    _folder_patients(root, splits)
    task = _infer_task(splits["train"].labels, len(class_names))
    return LabelledSource(str(root), "folder", task, class_names, splits)


def _folder_patients(root: Path, splits: dict[str, Split]) -> None:
    """Patient ids of a class-folder tree from its optional `manifest.csv` (columns file, patient_id; a file
    named by its name): what splits group by and clinical values join on. A file it does not list is an error."""
    import csv

    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"file", "patient_id"} <= set(rows[0]):
        raise DataError(f"{manifest}: a folder's manifest needs the columns file and patient_id")
    patients = {Path(row["file"].strip()).name: row["patient_id"].strip() for row in rows}
    for name, split in splits.items():
        unlisted = [p for p in split.paths if Path(p).name not in patients]
        if unlisted:
            raise DataError(f"{manifest}: no row for {unlisted[0]} ({len(unlisted)} {name} image(s) unlisted)")
        split.patient_ids = [patients[Path(p).name] for p in split.paths]


def _open_csv(path: Path) -> LabelledSource:
    rows = read_manifest(path, required=("path", "label"), files=("path",))
    multilabel = any(";" in r["label"] for r in rows)
    raw = [[part.strip() for part in r["label"].split(";") if part.strip()] for r in rows]
    empty = [r["line"] for r, labels in zip(rows, raw, strict=True) if not labels]
    if empty:
        raise DataError(f"{path}: line {empty[0]} has an empty label ({len(empty)} row(s) in all)")
    names = sorted({n for labels in raw for n in labels}, key=_natural_key)
    position = {n: i for i, n in enumerate(names)}
    if multilabel:
        labels = np.zeros((len(rows), len(names)), dtype=np.float32)
        for i, row_labels in enumerate(raw):
            labels[i, [position[n] for n in row_labels]] = 1.0
    else:
        labels = np.asarray([position[r[0]] for r in raw], dtype=np.int64)
    patients = [r.get("patient_id") or "" for r in rows] if "patient_id" in rows[0] else None
    masks = _mask_column(path, rows) if "mask" in rows[0] else None
    splits = {}
    for name in SPLITS:
        index = np.asarray([i for i, r in enumerate(rows) if r["split"] == name], dtype=int)
        if len(index):
            splits[name] = Split(
                labels=labels[index],
                paths=[rows[i]["path"][0] for i in index],
                patient_ids=None if patients is None else [patients[i] for i in index],
                masks=None if masks is None else [masks[i] for i in index],
            )
    if "train" not in splits:
        raise DataError(f"{path}: no rows in the train split")
    return LabelledSource(str(path), "csv", _infer_task(labels, len(names)), names, splits)


def _mask_column(path: Path, rows: list[dict]) -> list[str]:
    """The optional `mask` column: a lesion mask per image for localisation scores (empty: no mask)."""
    masks = []
    for row in rows:
        given = row.get("mask") or ""
        file = Path(given) if not given or Path(given).is_absolute() else path.parent / given
        if given and not file.exists():
            raise DataError(f"{path} line {row['line']}: mask {file} does not exist")
        masks.append(str(file) if given else "")
    return masks


def _natural_key(name: str):
    return (0, float(name), name) if name.replace(".", "", 1).lstrip("-").isdigit() else (1, 0.0, name)


def strata(split: Split) -> np.ndarray:
    """(N,) the class to stratify on: the label, or the first positive label of a multi-label row."""
    return split.labels if split.labels.ndim == 1 else split.labels.argmax(axis=1)


def ensure_splits(source: LabelledSource, *, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Carve missing val/test splits out of train; stratified, grouped by patient when ids exist. Returns notes."""
    return carve_splits(
        source.splits,
        strata=strata,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        where=source.path,
    )
