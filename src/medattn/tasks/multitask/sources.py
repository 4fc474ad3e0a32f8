"""Multi-task data: the segmentation layouts (tasks/segment/sources.py), each case carrying its per-image labels.

- a folder with images/ and masks/ whose `manifest.csv` (columns `file` or `image`, `patient_id`, ...) carries
  the label columns the heads name, one row per image;
- a CSV with `image` and `mask` columns (and optional `patient_id`, `split`) plus the label columns;
- without a segmentation head: classification's CSV, `path` plus the label columns (optional `patient_id`,
  `split`), images without masks.
`classification:foreground` needs no column (but masks). A named column that is absent or empty in every row, or (for a
regression head) holds a value that is not a finite number, is a DataError naming the file and the column. An
empty cell leaves that image out of that head's loss and scores. Splits: by patient when every case has an id.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from medattn.data.manifest import csv_header, read_manifest
from medattn.errors import DataError
from medattn.tasks.multitask.heads import REGRESSION, SEGMENTATION, Head
from medattn.tasks.segment.sources import (
    Case,
    SegmentationSource,
    ensure_case_splits,
    file_stem,
    is_segmentation_data,
    open_segmentation,
)


@dataclass
class LabelledCase(Case):
    values: dict[str, str] = field(default_factory=dict)  # column -> the cell as written ("" when empty)


def _is_image_table(path: Path) -> bool:
    """A CSV in classification's layout (`path` and label columns), without masks."""
    return path.suffix.lower() == ".csv" and path.is_file() and "path" in csv_header(path)


def looks_like_multitask(path: Path) -> bool:
    return is_segmentation_data(path) or _is_image_table(Path(path))


def _open_images(path: Path, columns: list[str]) -> SegmentationSource:
    """A `path,<label columns>[,patient_id][,split]` CSV: cases with images and no mask (maskless heads only)."""
    rows = read_manifest(path, required=("path", *columns), files=("path",))
    splits: dict[str, list[LabelledCase]] = {}
    for row in rows:
        case = LabelledCase(
            name=file_stem(Path(row["path"][0])),
            images=row["path"],
            mask="",
            patient_id=row.get("patient_id") or None,
            values={c: row[c] for c in columns},
        )
        splits.setdefault(row["split"], []).append(case)
    if not splits.get("train"):
        raise DataError(f"{path}: no rows in the train split")
    return SegmentationSource(str(path), "images", splits, class_names=["background"])


def _table(source: SegmentationSource) -> tuple[Path, str, list[dict]]:
    """(the file holding the label columns, the column naming each row's image, its rows)."""
    root = Path(source.path)
    if source.kind == "folder":
        table, keys = root / "manifest.csv", ("file", "image")
    elif source.kind == "csv":
        table, keys = root, ("mask",)
    else:
        raise DataError(f"{root}: label columns are read from a folder's manifest.csv or an image,mask CSV")
    if not table.is_file():
        raise DataError(f"{table} does not exist: the per-image label columns are read from it")
    try:
        with table.open(newline="") as handle:
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{table}: cannot read CSV: {error}") from error
    key = next((k for k in keys if rows and k in rows[0]), None)
    if key is None:
        raise DataError(f"{table}: needs a column {' or '.join(keys)} naming each row's image")
    return table, key, rows


def open_multitask(path: str | Path, heads: list[Head], *, class_names: list[str] | None = None) -> SegmentationSource:
    """The source at `path` with each case's label cells, every named column checked."""
    columns = [h.column for h in heads if h.kind != SEGMENTATION and not h.derived]
    path = Path(path)
    if not is_segmentation_data(path) and _is_image_table(path):
        masked = [h.name for h in heads if h.kind == SEGMENTATION or h.derived]
        if masked:
            raise DataError(f"{path}: a path,<labels> CSV has no masks, which {', '.join(masked)} need")
        source = _open_images(path, columns)
        for head in heads:
            check_column(path, head, [c for cases in source.splits.values() for c in cases])
        return source
    if not is_segmentation_data(path):
        raise DataError(
            f"{path}: multi-task data is a folder with images/, masks/ and manifest.csv holding the label columns, "
            "a CSV with image and mask columns plus the label columns, or (without masks) a CSV with a path column "
            "plus the label columns"
        )
    source = open_segmentation(path, class_names=class_names)
    table, rows, key = None, [], ""
    if columns:
        table, key, rows = _table(source)
        found = list(rows[0]) if rows else []
        for column in columns:
            if column not in found:
                raise DataError(f"{table}: no column {column!r} for --heads (found: {', '.join(found)})")
    by_case = {file_stem(Path(row[key])): row for row in rows}
    for split, cases in source.splits.items():
        source.splits[split] = [
            LabelledCase(**vars(case), values={c: by_case.get(case.name, {}).get(c, "") for c in columns})
            for case in cases
        ]
    for head in heads:
        if head.column in columns:
            check_column(table, head, [c for cases in source.splits.values() for c in cases])
    return source


def check_column(table: Path | str, head: Head, cases: list[LabelledCase]) -> None:
    """A column with at least one value; for a regression head, every value a finite number."""
    cells = [(case, case.values.get(head.column, "")) for case in cases]
    if not any(value for _, value in cells):
        raise DataError(f"{table}: column {head.column!r} ({head.name}) is empty for every image")
    if head.kind != REGRESSION:
        return
    for case, value in cells:
        if not value:
            continue
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise DataError(
                f"{table}: column {head.column!r} ({head.name}) holds {value!r} for {case.name}: not a finite number"
            )


def open_split(config) -> SegmentationSource:
    """config.data.path opened with its heads' columns, val and test carved as training carves them."""
    from medattn.tasks.multitask.heads import parse_heads

    data = config.data
    source = open_multitask(data.path, parse_heads(data.heads), class_names=data.class_names)
    source.notes += ensure_case_splits(
        source, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=config.train.seed
    )
    return source
