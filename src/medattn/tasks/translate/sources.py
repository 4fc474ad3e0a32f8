"""Paired images for translation, opened as a `PairSource`: items per split, each naming where its source and
target come from, read on demand by `read_pair`.

Layouts (data.path):
- a folder with `source/` and `target/` (or `train/`, `val/`, `test/` each holding both): matching names, any
  readable format (PNG, NIfTI, a DICOM series folder); an optional `manifest.csv` (`file` or `image`, and
  `patient_id`) beside them groups images by patient;
- a CSV `source,target[,patient_id][,split]`, paths relative to the CSV, `a;b` for several source channels;
- an .npz with `source` and `target` arrays (N, [C,] H, W[, D]) and optional `split` and `patient_id` arrays;
- one multi-channel set whose channels are split by `data.source_channels` / `data.target_channels`, or single
  images degraded by `data.degrade` (the image is the target): a folder of images (or its `images/`, with
  `manifest.csv` as above), a CSV with a `path` column, or an .npz with `images` (or `{split}_images`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medattn.data.manifest import SPLITS, csv_header, read_manifest
from medattn.data.readers import SUPPORTED_SUFFIXES
from medattn.errors import DataError

PAIR_DIRS = ("source", "target")


@dataclass
class Pair:
    name: str
    source: list[str] | None = None  # files (or DICOM folders) joined on the channels; None: an npz row
    target: str | None = None  # None: taken from the source's channels, or the source itself degraded
    patient_id: str | None = None
    row: int | None = None  # the npz row


@dataclass
class PairSource:
    path: str
    kind: str  # folder | csv | npz | channels | degrade
    splits: dict[str, list[Pair]]
    arrays: dict | None = None  # npz: {"source": (N, C, *S), "target": (N, C, *S) or None}
    source_channels: list[int] | None = None
    target_channels: list[int] | None = None
    degrade: str | None = None
    modality: str = "auto"
    notes: list[str] = field(default_factory=list)


def _listing(folder: Path) -> dict[str, Path]:
    """{stem: path} of the image files and DICOM folders in `folder`."""
    from medattn.tasks.segment.sources import file_stem

    found = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not (path.is_dir() or path.name.lower().endswith(SUPPORTED_SUFFIXES)):
            continue
        found[file_stem(path)] = path
    return found


def _paired_folders(root: Path) -> dict[str, Path]:
    if all((root / d).is_dir() for d in PAIR_DIRS):
        return {"train": root}
    return {s: root / s for s in SPLITS if all((root / s / d).is_dir() for d in PAIR_DIRS)}


def _npz_keys(path: Path) -> set[str]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return set(npz.files)
    except (OSError, ValueError):
        return set()


def is_paired_data(path: str | Path) -> bool:
    """A folder with source/ and target/, a CSV with source and target columns, or an npz with both arrays."""
    path = Path(path)
    if path.is_dir():
        return bool(_paired_folders(path))
    if path.suffix.lower() == ".csv" and path.is_file():
        return {"source", "target"} <= set(csv_header(path))
    if path.suffix.lower() == ".npz" and path.is_file():
        return {"source", "target"} <= _npz_keys(path)
    return False


def _patients(root: Path) -> dict[str, str]:
    from medattn.tasks.segment.sources import _patients as manifest_patients

    return manifest_patients(root)


def _open_folder(root: Path, folders: dict[str, Path]) -> dict[str, list[Pair]]:
    patients = _patients(root)
    splits = {}
    for split, folder in folders.items():
        sources, targets = _listing(folder / "source"), _listing(folder / "target")
        unmatched = sorted(set(sources) ^ set(targets))
        if unmatched:
            raise DataError(
                f"{folder}: {len(unmatched)} image(s) without a partner in source/ and target/ "
                f"(names must match), e.g. {', '.join(unmatched[:5])}"
            )
        splits[split] = [
            Pair(name, [str(sources[name])], str(targets[name]), patients.get(name)) for name in sorted(sources)
        ]
    return splits


def _open_csv(path: Path, columns: tuple[str, ...]) -> dict[str, list[Pair]]:
    from medattn.tasks.segment.sources import file_stem

    rows = read_manifest(path, required=columns, files=columns)
    splits: dict[str, list[Pair]] = {}
    for row in rows:
        first = row[columns[0]]
        target = row["target"][0] if "target" in columns else None
        if "target" in columns and len(row["target"]) != 1:
            raise DataError(f"{path} line {row['line']}: one target file per row, found {len(row['target'])}")
        name = file_stem(Path(target or first[0]))
        splits.setdefault(row["split"], []).append(Pair(name, first, target, row.get("patient_id") or None))
    return splits


def _channel_first(array: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) -> (N, 1, H, W); (N, C, H, W) with C <= 8 kept; (N, H, W, D) -> (N, 1, H, W, D); 5-D kept."""
    if array.ndim == 3 or (array.ndim == 4 and array.shape[1] > 8):
        return array[:, None]
    if array.ndim in (4, 5):
        return array
    raise DataError(f"{where}: expected (N, [C,] H, W[, D]), found shape {list(array.shape)}")


def _open_npz(path: Path, keys: tuple[str, ...]) -> tuple[dict[str, list[Pair]], dict]:
    with np.load(path, allow_pickle=False) as npz:
        present = set(npz.files)
        if keys[0] not in present and "train_images" in present:  # MedMNIST layout: one array per split
            arrays, splits_of, names = [], [], [s for s in SPLITS if f"{s}_images" in present]
            for split in names:
                arrays.append(_channel_first(npz[f"{split}_images"], f"{path} [{split}_images]"))
                splits_of += [split] * len(arrays[-1])
            array = {"source": np.concatenate(arrays), "target": None}
            labels, patients = np.asarray(splits_of), None
        else:
            # the first key holds the sources ("source", or "images" of a set whose channels are picked)
            array = {
                role: _channel_first(npz[k], f"{path} [{k}]")
                for role, k in zip(("source", "target"), keys, strict=False)
            }
            array.setdefault("target", None)
            count = len(array["source"])
            labels = npz["split"].astype(str) if "split" in present else np.full(count, "train")
            patients = npz["patient_id"].astype(str) if "patient_id" in present else None
    count = len(array["source"])
    if array["target"] is not None and array["target"].shape[2:] != array["source"].shape[2:]:
        raise DataError(
            f"{path}: source images {list(array['source'].shape[2:])} and targets "
            f"{list(array['target'].shape[2:])} differ in shape"
        )
    for name, values in (("split", labels), ("patient_id", patients)):
        if values is not None and len(values) != count:
            raise DataError(f"{path}: {name} has {len(values)} entries for {count} images")
    unknown = sorted(set(labels) - set(SPLITS))
    if unknown:
        raise DataError(f"{path}: split values {unknown} are not {', '.join(SPLITS)}")
    splits: dict[str, list[Pair]] = {}
    for i in range(count):
        patient = None if patients is None else str(patients[i])
        splits.setdefault(str(labels[i]), []).append(Pair(f"{labels[i]}-{i:05d}", patient_id=patient, row=i))
    return splits, array


def _open_single(path: Path) -> tuple[dict[str, list[Pair]], dict | None]:
    """A set of single images: a folder (or its images/), a CSV with `path`, an npz with images."""
    if path.is_dir():
        folder = path / "images" if (path / "images").is_dir() else path
        patients = _patients(path)
        found = _listing(folder)
        if not found:
            raise DataError(f"{folder}: no images (PNG, NIfTI, DICOM) in the folder")
        return {"train": [Pair(n, [str(p)], None, patients.get(n)) for n, p in found.items()]}, None
    if path.suffix.lower() == ".csv":
        return _open_csv(path, ("path",)), None
    if path.suffix.lower() == ".npz":
        return _open_npz(path, ("images",))
    raise DataError(f"{path}: expected a folder of images, a CSV with a path column, or an .npz of images")


def open_pairs(path: str | Path, *, source_channels=None, target_channels=None, degrade=None) -> PairSource:
    """The source of `path` without carving splits (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    picked = source_channels is not None
    if picked and degrade is not None:
        raise DataError(f"{path}: --degrade builds pairs from single images; it does not go with channel picking")
    arrays = None
    if picked or degrade is not None:
        if is_paired_data(path):
            raise DataError(f"{path} is already paired (source and target); channel picking and --degrade read one set")
        splits, arrays = _open_single(path)
        kind = "channels" if picked else "degrade"
    elif path.is_dir() and (folders := _paired_folders(path)):
        splits, kind = _open_folder(path, folders), "folder"
    elif path.suffix.lower() == ".csv" and is_paired_data(path):
        splits, kind = _open_csv(path, ("source", "target")), "csv"
    elif path.suffix.lower() == ".npz" and is_paired_data(path):
        (splits, arrays), kind = _open_npz(path, ("source", "target")), "npz"
    else:
        raise DataError(
            f"{path}: not paired data (a folder with source/ and target/, a CSV source,target, an npz with source "
            "and target arrays); for one multi-channel set pass --source-channels and --target-channels, for single "
            "images --degrade"
        )
    if not splits.get("train"):
        raise DataError(f"{path}: no training pairs")
    return PairSource(
        str(path),
        kind,
        splits,
        arrays=arrays,
        source_channels=None if source_channels is None else list(source_channels),
        target_channels=None if target_channels is None else list(target_channels),
        degrade=degrade,
    )


def ensure_splits(source: PairSource, *, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    from medattn.data.splits import carve_splits

    def groups(items):
        return [p.patient_id for p in items] if all(p.patient_id for p in items) else None

    return carve_splits(
        source.splits,
        groups=groups,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        where=source.path,
    )
