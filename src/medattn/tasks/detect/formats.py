"""The picture formats of detection data: Pascal VOC, COCO and YOLO (2D), opened as a DetectionSource.

Each converts its boxes to pixel coordinates along the array axes (rows, columns): VOC's 1-based inclusive
corners (xmin, ymin, xmax, ymax) give [ymin - 1, xmin - 1, ymax, xmax]; COCO's [x, y, width, height] gives
[y, x, y + height, x + width]; YOLO's normalised centre and size are scaled by the image's own size. VOC's
`difficult` objects count as ordinary boxes (COCO-style scoring has no such flag).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from medattn.data.manifest import SPLITS
from medattn.data.raster import RASTER_SUFFIXES
from medattn.errors import DataError
from medattn.tasks.detect.sources import Annotated, DetectionSource

YOLO_IMAGE_DIRS, YOLO_LABEL_DIRS = ("images",), ("labels",)


def picture_boxes(corners: list[list[float]]) -> np.ndarray:
    """(N, 4) [row lo, column lo, row hi, column hi] from picture corners (x1, y1, x2, y2)."""
    array = np.asarray(corners, dtype=np.float32).reshape(-1, 4)
    return array[:, [1, 0, 3, 2]]


def class_indices(names: list[str], declared: list[str]) -> np.ndarray:
    """(N,) the index of each name in `declared`, -1 for a name it does not hold."""
    lookup = {name: i for i, name in enumerate(declared)}
    return np.asarray([lookup.get(name, -1) for name in names], dtype=np.int64)


def annotated(
    image: Path, corners: list, names: list[str], declared: list[str], where: str, origins: list[str] | None = None
) -> Annotated:
    boxes, labels = picture_boxes(corners), class_indices(names, declared)
    return Annotated(str(image), boxes, labels, where, names=list(names), origins=list(origins or []))


def _pictures(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.name.lower().endswith(RASTER_SUFFIXES)}


# -- Pascal VOC -------------------------------------------------------------------------------------------------


def is_voc(path: Path) -> bool:
    return (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


def _voc_objects(xml: Path) -> tuple[str | None, list[str], list[list[float]]]:
    try:
        root = ElementTree.parse(xml).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise DataError(f"{xml}: cannot read the VOC annotation: {error}") from error
    names, corners = [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        name = (obj.findtext("name") or "").strip()
        try:
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as error:
            raise DataError(f"{xml}: object {name!r} has no numeric bndbox xmin/ymin/xmax/ymax") from error
        names.append(name)
        corners.append([x1 - 1, y1 - 1, x2, y2])  # 1-based inclusive pixel indices -> pixel edges
    return root.findtext("filename"), names, corners


def open_voc(root: Path, class_names: list[str] | None) -> DetectionSource:
    pictures = _pictures(root / "JPEGImages")
    parsed = {}
    for xml in sorted((root / "Annotations").glob("*.xml")):
        filename, names, corners = _voc_objects(xml)
        named = root / "JPEGImages" / filename if filename else None
        # the <filename> as written, else a picture of its stem (some sets drop the suffix), else the XML's stem
        image = named if named is not None and named.is_file() else pictures.get(Path(filename or "").stem)
        image = image or pictures.get(xml.stem)
        if image is None:
            raise DataError(f"{xml}: its image {filename or xml.stem} is not in {root / 'JPEGImages'}")
        parsed[xml.stem] = (image, names, corners, str(xml))
    if not parsed:
        raise DataError(f"{root / 'Annotations'}: no .xml annotations")
    declared = list(class_names) if class_names else sorted({n for _, names, _, _ in parsed.values() for n in names})
    items = {stem: annotated(image, c, n, declared, where) for stem, (image, n, c, where) in parsed.items()}
    splits, notes = {}, []
    lists = root / "ImageSets" / "Main"
    for split in SPLITS:
        listed = lists / f"{split}.txt"
        if split == "train" and not listed.is_file() and (lists / "trainval.txt").is_file():
            listed = lists / "trainval.txt"
        if listed.is_file():
            stems = listed.read_text().split()
            unknown = [s for s in stems if s not in items]
            if unknown:
                raise DataError(f"{listed}: {len(unknown)} listed image(s) have no annotation, e.g. {unknown[0]}")
            splits[split] = [items[s] for s in stems]
    if not splits:
        splits["train"] = list(items.values())
    else:
        notes.append(f"official split from {lists}")
    return DetectionSource(str(root), "voc", declared, splits, notes=notes)


# -- COCO -------------------------------------------------------------------------------------------------------


def _coco_image(root: Path, name: str) -> Path:
    """The file a COCO `file_name` names: beside the JSON, in images/ there, or one level up (annotations/ beside
    the image folder, as COCO itself ships)."""
    for folder in (root, root / "images", root.parent, root.parent / "images"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{root}: image {name} is not beside the JSON, in images/, nor one level up")


def open_coco(path: Path, class_names: list[str] | None) -> DetectionSource:
    spec = json.loads(path.read_text())
    try:
        categories = sorted(spec.get("categories") or [], key=lambda c: c["id"])
        by_category = {c["id"]: str(c["name"]) for c in categories}
        images = {int(i["id"]): i for i in spec["images"]}
        annotations = spec["annotations"]
    except (KeyError, TypeError) as error:
        raise DataError(f"{path}: not a COCO file (images with id, categories with id and name): {error}") from error
    declared = list(class_names) if class_names else [by_category[c["id"]] for c in categories]
    per_image: dict[int, tuple[list, list]] = {i: ([], []) for i in images}
    crowd = 0
    for number, note in enumerate(annotations):
        if note.get("iscrowd"):
            crowd += 1
            continue
        bbox, image = note.get("bbox"), note.get("image_id")
        if image not in per_image or not isinstance(bbox, list) or len(bbox) != 4:
            raise DataError(f"{path}: annotation {number} needs an image_id of a listed image and bbox [x, y, w, h]")
        x, y, w, h = (float(v) for v in bbox)
        per_image[image][0].append([x, y, x + w, y + h])
        per_image[image][1].append(by_category.get(note.get("category_id"), str(note.get("category_id"))))
    items = [
        annotated(_coco_image(path.parent, images[i]["file_name"]), c, n, declared, f"{path} image id {i}")
        for i, (c, n) in per_image.items()
    ]
    notes = [f"{crowd} crowd region(s) (iscrowd) left out"] if crowd else []
    return DetectionSource(str(path), "coco", declared, {"train": items}, notes=notes)


# -- YOLO -------------------------------------------------------------------------------------------------------


YOLO_SPLITS = {"train": "train", "val": "val", "valid": "val", "test": "test"}  # folder name -> split


def _yolo_dirs(root: Path) -> dict[str, tuple[Path, Path]]:
    """{split: (images folder, labels folder)}: images/ and labels/ (ultralytics: with train/ val/ test/ inside),
    or train/ valid/ test/ each holding images/ and labels/ (Roboflow's export)."""
    images, labels = root / "images", root / "labels"
    if images.is_dir() and labels.is_dir():
        nested = {YOLO_SPLITS[s]: (images / s, labels / s) for s in YOLO_SPLITS if (images / s).is_dir()}
        return nested or {"train": (images, labels)}
    return {
        YOLO_SPLITS[s]: (root / s / "images", root / s / "labels")
        for s in YOLO_SPLITS
        if (root / s / "images").is_dir() and (root / s / "labels").is_dir()
    }


def is_yolo(path: Path) -> bool:
    dirs = _yolo_dirs(path)
    return bool(dirs) and any(any(labels.glob("*.txt")) for _, labels in dirs.values() if labels.is_dir())


def _yolo_names(root: Path) -> list[str] | None:
    if (root / "classes.txt").is_file():
        return [line.strip() for line in (root / "classes.txt").read_text().splitlines() if line.strip()]
    for name in ("data.yaml", "dataset.yaml"):
        if (root / name).is_file():
            import yaml

            names = (yaml.safe_load((root / name).read_text()) or {}).get("names")
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, list):
                return [str(n) for n in names]
    return None


def _yolo_item(image: Path, label_file: Path, names: list[str]) -> Annotated:
    from PIL import Image

    with Image.open(image) as picture:
        width, height = picture.size
    rows = []
    if label_file.is_file():
        for number, line in enumerate(label_file.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(([float(v) for v in line.split()], number))
                except ValueError as error:
                    raise DataError(
                        f"{label_file} line {number}: expected 'class cx cy w h', found {line!r}"
                    ) from error
    corners = []
    for values, number in rows:
        if len(values) == 5:
            _, cx, cy, w, h = values
            corners.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        elif len(values) >= 7 and len(values) % 2 == 1:  # a polygon (YOLO's segment labels): its extent
            xs, ys = np.asarray(values[1::2]) * width, np.asarray(values[2::2]) * height
            corners.append([xs.min(), ys.min(), xs.max(), ys.max()])
        else:
            raise DataError(f"{label_file} line {number}: expected 'class cx cy w h' or a polygon, found {values}")
    ids = [int(values[0]) for values, _ in rows]
    labelled = [names[i] if 0 <= i < len(names) else f"class id {i}" for i in ids]
    origins = [f"{label_file} line {number}" for _, number in rows]
    return annotated(image, corners, labelled, names, str(label_file), origins)


def open_yolo(root: Path, class_names: list[str] | None) -> DetectionSource:
    dirs = _yolo_dirs(root)
    names = list(class_names) if class_names else _yolo_names(root)
    notes = []
    if names is None:
        top = max(
            (
                int(line.split()[0])
                for _, labels in dirs.values()
                for f in labels.glob("*.txt")
                for line in f.read_text().splitlines()
                if line.strip()
            ),
            default=0,
        )
        names = [f"class_{k}" for k in range(top + 1)]
        notes.append(f"no classes.txt or data.yaml: {len(names)} classes named by their ids")
    splits = {}
    for split, (images, labels) in dirs.items():
        splits[split] = [_yolo_item(p, labels / f"{p.stem}.txt", names) for p in _pictures(images).values()]
    return DetectionSource(str(root), "yolo", names, splits, notes=notes)
