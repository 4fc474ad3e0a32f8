"""Segmentation datasets: images paired with label masks, from a folder, an MSD dataset.json or a CSV.

Three layouts open as a `SegmentationSource` (cases per split, each with its image file(s), mask, patient):
- a folder with `images/` and `masks/` (also named image/, imagesTr/ and mask/, labels/, label/, labelsTr/;
  or `train/`, `val/`, `test/` each holding both; a split without masks is left out): an image and its
  mask share a name (`case1.png` / `case1.png`, `ct_7.nii.gz` / `ct_7.nii.gz`, a DICOM series folder `s1/`
  with a mask `s1.nii.gz`). Channels in separate files follow nnU-Net's naming, `case1_0000.nii.gz`,
  `case1_0001.nii.gz`, ... beside the mask `case1.nii.gz`. An optional `manifest.csv` beside the two folders
  with columns `file` (or `image`) and `patient_id` groups cases by patient;
- an MSD-style `dataset.json` (the file, or a folder holding it): `training` pairs, `labels` names the
  classes, `modality` names the channels;
- a CSV with columns `image` and `mask` (paths relative to the CSV; several channel files joined by `;`),
  optional `patient_id` and `split` (train / val / test).
Missing val/test splits are carved by case, or by patient when ids exist, with a seed.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from medattn.data.manifest import SPLITS, csv_header, read_manifest
from medattn.data.readers import SUPPORTED_SUFFIXES
from medattn.data.splits import carve_splits
from medattn.errors import DataError

_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")  # nnU-Net: case_0000, case_0001, ...
IMAGE_DIRS = ("images", "image", "imagesTr")  # the first that exists is used
MASK_DIRS = ("masks", "mask", "labels", "label", "labelsTr")


@dataclass
class Case:
    name: str
    images: list[str]  # one file (or DICOM folder) per channel group; usually one
    mask: str
    patient_id: str | None = None


@dataclass
class SegmentationSource:
    path: str
    kind: str  # folder | msd | csv
    splits: dict[str, list[Case]]
    class_names: list[str] | None = None  # declared by the data (MSD labels); None: inferred from the masks
    modality: str = "auto"
    channel_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def file_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _entries(folder: Path) -> list[Path]:
    """Image files and DICOM series folders in `folder`, hidden ones left out."""
    return [
        p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and (p.is_dir() or p.name.lower().endswith(SUPPORTED_SUFFIXES))
    ]


def _pair(folder: Path) -> tuple[Path, Path] | None:
    """(images folder, masks folder) inside `folder`, under any of the usual names, or None."""
    images = next((folder / n for n in IMAGE_DIRS if (folder / n).is_dir()), None)
    masks = next((folder / n for n in MASK_DIRS if (folder / n).is_dir()), None)
    return (images, masks) if images and masks else None


def _layout(root: Path) -> dict[str, tuple[Path, Path]] | None:
    """{split: (images folder, masks folder)}, or None when root is not such a folder."""
    if (pair := _pair(root)) is not None:
        return {"train": pair}
    found = {s: pair for s in SPLITS if (root / s).is_dir() and (pair := _pair(root / s)) is not None}
    return found or None


def is_segmentation_data(path: str | Path) -> bool:
    """True for the three segmentation layouts above (an images/ + masks/ folder, dataset.json, image/mask CSV)."""
    path = Path(path)
    if path.is_dir():
        return (path / "dataset.json").is_file() or _layout(path) is not None
    if path.suffix.lower() == ".json":
        return True
    if path.suffix.lower() == ".csv" and path.is_file():
        return {"image", "mask"} <= set(csv_header(path))
    return False


def open_segmentation(path: str | Path, *, class_names: list[str] | None = None) -> SegmentationSource:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    if path.suffix.lower() == ".json" or (path.is_dir() and (path / "dataset.json").is_file()):
        source = _open_msd(path if path.is_file() else path / "dataset.json")
    elif path.is_dir() and (layout := _layout(path)) is not None:
        source = _open_folder(path, layout)
    elif path.suffix.lower() == ".csv":
        source = _open_csv(path)
    else:
        raise DataError(
            f"{path}: not segmentation data (expected a folder with images/ and masks/, an MSD dataset.json, "
            "or a CSV with image and mask columns)"
        )
    if class_names is not None:
        if source.class_names is not None and len(class_names) != len(source.class_names):
            raise DataError(
                f"{path}: {len(class_names)} class names given but the data declares {len(source.class_names)} "
                f"({', '.join(source.class_names)})"
            )
        source.class_names = list(class_names)
    if "train" not in source.splits or not source.splits["train"]:
        raise DataError(f"{path}: no training cases")
    return source


def _patients(root: Path) -> dict[str, str]:
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    key = "file" if rows and "file" in rows[0] else "image"
    if not rows or key not in rows[0] or "patient_id" not in rows[0]:
        return {}
    return {file_stem(Path(r[key])): r["patient_id"] for r in rows}


def _open_folder(root: Path, layout: dict[str, tuple[Path, Path]]) -> SegmentationSource:
    patients = _patients(root)
    splits = {}
    for split, (image_dir, mask_dir) in layout.items():
        masks = {file_stem(p): p for p in _entries(mask_dir)}
        if not masks:
            raise DataError(f"{mask_dir}: no mask files (expected one per image, with the image's name)")
        images: dict[str, list[Path]] = {}
        for image in _entries(image_dir):
            stem = file_stem(image)
            match = _CHANNEL_FILE.match(stem)
            case = match["case"] if stem not in masks and match and match["case"] in masks else stem
            images.setdefault(case, []).append(image)
        if not images:
            raise DataError(f"{image_dir}: no image files")
        lonely = sorted(set(images) - set(masks))
        if lonely:
            raise DataError(
                f"{image_dir}: {len(lonely)} image(s) without a mask of the same name in {mask_dir}, "
                f"e.g. {images[lonely[0]][0].name}"
            )
        orphans = sorted(set(masks) - set(images))
        if orphans:
            raise DataError(
                f"{mask_dir}: {len(orphans)} mask(s) without an image of the same name in {image_dir}, "
                f"e.g. {masks[orphans[0]].name}"
            )
        splits[split] = [
            Case(name=c, images=[str(p) for p in images[c]], mask=str(masks[c]), patient_id=patients.get(c))
            for c in sorted(images)
        ]
    return SegmentationSource(str(root), "folder", splits, channel_names=_channel_suffixes(splits))


def _channel_suffixes(splits: dict[str, list[Case]]) -> list[str] | None:
    """The channel files' suffixes (0000, 0001, ...) when every case has the same several: the channels' names."""
    suffixes = {
        tuple(
            _CHANNEL_FILE.match(file_stem(Path(f)))["channel"] if _CHANNEL_FILE.match(file_stem(Path(f))) else ""
            for f in case.images
        )
        for cases in splits.values()
        for case in cases
    }
    if len(suffixes) != 1:
        return None
    [names] = suffixes
    return list(names) if len(names) > 1 and all(names) else None


def _modality_of(names: list[str]) -> str:
    text = " ".join(names).upper()
    if "CT" in text.split():
        return "ct"
    if any(k in text for k in ("MR", "T1", "T2", "FLAIR", "ADC", "DWI")):
        return "mr"
    return "auto"


def _open_msd(path: Path) -> SegmentationSource:
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot read dataset.json: {error}") from error
    training = spec.get("training")
    if not isinstance(training, list) or not training:
        raise DataError(f"{path}: expected a non-empty 'training' list of {{image, label}} pairs")
    labels = spec.get("labels") or {}
    try:
        order = sorted((int(k), str(v)) for k, v in labels.items())
    except (AttributeError, ValueError) as error:
        raise DataError(f"{path}: 'labels' must map integer labels to names, found {labels!r}") from error
    if order and [k for k, _ in order] != list(range(len(order))):
        raise DataError(f"{path}: 'labels' must number the classes 0..K-1, found {[k for k, _ in order]}")
    channels = [str(v) for _, v in sorted((int(k), v) for k, v in (spec.get("modality") or {}).items())]
    cases, missing = [], []
    for i, entry in enumerate(training):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise DataError(f"{path}: training entry {i} needs 'image' and 'label', found {entry!r}")
        images = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
        files = [(path.parent / f).resolve() for f in [*images, entry["label"]]]
        missing += [str(f) for f in files if not f.exists()]
        cases.append(Case(name=file_stem(files[-1]), images=[str(f) for f in files[:-1]], mask=str(files[-1])))
    if missing:
        raise DataError(f"{path}: {len(missing)} listed file(s) do not exist, e.g. {missing[0]}")
    return SegmentationSource(
        str(path),
        "msd",
        {"train": cases},
        class_names=[name for _, name in order] or None,
        modality=_modality_of(channels),
        channel_names=channels or None,
    )


def _open_csv(path: Path) -> SegmentationSource:
    splits: dict[str, list[Case]] = {}
    for row in read_manifest(path, required=("image", "mask"), files=("image", "mask")):
        mask = row["mask"][0]
        case = Case(
            name=file_stem(Path(mask)), images=row["image"], mask=mask, patient_id=row.get("patient_id") or None
        )
        splits.setdefault(row["split"], []).append(case)
    return SegmentationSource(str(path), "csv", splits)


def ensure_case_splits(
    source: SegmentationSource, *, val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """Carve missing test and val splits from train by case, or by patient when every case has an id."""

    def patients(cases: list[Case]):
        return [c.patient_id for c in cases] if all(c.patient_id for c in cases) else None

    return carve_splits(
        source.splits,
        groups=patients,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        where=source.path,
        unit="cases",
    )
