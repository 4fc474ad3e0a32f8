"""CSV manifests, for every task: one row per image (or case), file paths relative to the CSV.

Shared columns: `patient_id` (optional; splits and folds never put one patient in two places) and `split`
(optional: train, val or test). Each task names its own columns (`path,label`; `image,mask`; `path,<targets>`).
A file column may list several files joined by `;` (the channels of one case).
"""

from __future__ import annotations

import csv
from pathlib import Path

from medattn.errors import DataError

SPLITS = ("train", "val", "test")


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file, or [] when it cannot be read."""
    try:
        with Path(path).open(newline="") as handle:
            return [h.strip() for h in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def read_manifest(path: Path, *, required: tuple[str, ...], files: tuple[str, ...]) -> list[dict]:
    """Rows of the CSV at `path` (each with its `line` number), `files` columns made absolute and checked.

    Every error names the CSV and, where it is one row's fault, its line.
    """
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read CSV: {error}") from error
    if not rows:
        raise DataError(f"{path}: the CSV has no rows")
    columns = {c.strip() for c in rows[0] if c is not None}
    absent = [c for c in required if c not in columns]
    if absent:
        raise DataError(
            f"{path}: the CSV needs the column(s) {', '.join(required)}; missing {', '.join(absent)} "
            f"(found: {', '.join(sorted(columns))})"
        )
    missing = []
    for line, row in enumerate(rows, start=2):
        if None in row:  # csv puts the fields beyond the header under the key None
            raise DataError(f"{path} line {line}: more fields than the header's {len(columns)} columns")
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        rows[line - 2] = row
        row["line"] = line
        split = row.get("split") or "train"
        if split not in SPLITS:
            raise DataError(f"{path} line {line}: split {split!r} is not one of {', '.join(SPLITS)}")
        row["split"] = split
        for column in files:
            listed = [part.strip() for part in row[column].split(";") if part.strip()]
            if not listed:
                raise DataError(f"{path} line {line}: the {column!r} column is empty")
            resolved = [Path(f) if Path(f).is_absolute() else path.parent / f for f in listed]
            missing += [f"line {line}: {f}" for f in resolved if not f.exists()]
            row[column] = [str(f) for f in resolved]
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{path}: {len(missing)} listed file(s) do not exist: {shown}")
    return rows


def patient(row: dict) -> str | None:
    return row.get("patient_id") or None
