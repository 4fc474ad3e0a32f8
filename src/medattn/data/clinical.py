"""Clinical variables beside the images: a per-patient table joined on `patient_id`, turned into one vector.

Each chosen column becomes numbers the same way in training, evaluation and prediction, from what the model card
records (`ClinicalSpec`): a numeric column is standardised with the training patients' mean and standard
deviation; a categorical one is one-hot encoded over the categories seen in training. Every column also gets a
missing-value indicator (1 where the value is empty, unparsable, an unseen category, or the patient has no row),
with the value itself set to 0, the training mean: a model learns what "unknown" means instead of reading a
made-up value. A column is numeric when every value given parses as a number and it has more than
CATEGORICAL_MAX distinct values (age); otherwise categorical (sex coded 1/2). `name:numeric` or
`name:categorical` in the column list decides instead.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medattn.errors import DataError

KEY = "patient_id"
CATEGORICAL_MAX = 5
KINDS = ("numeric", "categorical")


@dataclass
class ClinicalColumn:
    name: str
    kind: str  # numeric | categorical
    mean: float = 0.0
    std: float = 1.0
    categories: list[str] | None = None

    @property
    def width(self) -> int:
        return (1 if self.kind == "numeric" else len(self.categories)) + 1  # + the missing indicator

    def encode(self, value: str | None) -> list[float]:
        if self.kind == "numeric":
            number = _number(value)
            return [0.0, 1.0] if number is None else [(number - self.mean) / self.std, 0.0]
        hot = [float(value == c) for c in self.categories]
        return [*hot, 0.0 if any(hot) else 1.0]

    def features(self) -> list[str]:
        names = [self.name] if self.kind == "numeric" else [f"{self.name}={c}" for c in self.categories]
        return [*names, f"{self.name} missing"]


@dataclass
class ClinicalSpec:
    path: str  # the table training read (evaluate reads it again; predict looks bags up in it)
    columns: list[ClinicalColumn]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def vector(self, row: dict | None) -> np.ndarray:
        """(F,) float32 for one patient's row (None: a patient the table does not list: every value missing)."""
        row = row or {}
        return np.asarray([v for c in self.columns for v in c.encode(row.get(c.name))], dtype=np.float32)

    def vectors(self, table: dict[str, dict], patients: list[str]) -> np.ndarray:
        return np.stack([self.vector(table.get(p)) for p in patients]) if patients else np.zeros((0, self.width))

    def to_card(self) -> dict:
        return {
            "table": self.path,
            "key": KEY,
            "features": [f for c in self.columns for f in c.features()],
            "columns": [
                {"name": c.name, "kind": c.kind, "mean": c.mean, "std": c.std, "categories": c.categories}
                for c in self.columns
            ],
        }

    @classmethod
    def from_card(cls, card: dict) -> ClinicalSpec:
        return cls(card["table"], [ClinicalColumn(**column) for column in card["columns"]])


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def read_table(path: str | Path) -> dict[str, dict[str, str]]:
    """{patient_id: {column: value}} of a per-patient CSV; an id listed twice is an error."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read the clinical table: {error}") from error
    if not rows or KEY not in rows[0]:
        raise DataError(f"{path}: the clinical table needs a {KEY!r} column and one row per patient")
    table: dict[str, dict[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        patient = (row.get(KEY) or "").strip()
        if patient in table:
            raise DataError(f"{path} line {line}: patient {patient!r} has a second row")
        table[patient] = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
    return table


def fit_clinical(path: str | Path, columns: list[str], patients: list[str]) -> tuple[ClinicalSpec, dict]:
    """(spec, table): the columns' encodings fitted on the training patients' rows."""
    table = read_table(path)
    header = set(next(iter(table.values())))
    if not any(p in table for p in patients):
        raise DataError(f"{path}: none of the training patients is in the table (e.g. {patients[0]!r})")
    fitted = []
    for given in columns:
        name, _, kind = given.partition(":")
        if name not in header:
            raise DataError(f"{path}: no column {name!r} (columns: {', '.join(sorted(header - {KEY}))})")
        if kind and kind not in KINDS:
            raise DataError(f"--clinical-columns {given!r}: the kind after ':' is numeric or categorical")
        values = [table[p][name] for p in dict.fromkeys(patients) if p in table and table[p][name] != ""]
        if not values:
            raise DataError(f"{path}: column {name!r} has no value for any training patient")
        numbers = [_number(v) for v in values]
        numeric = all(n is not None for n in numbers) and len(set(values)) > CATEGORICAL_MAX
        if kind == "numeric" and any(n is None for n in numbers):
            raise DataError(f"{path}: column {name!r} is not numeric (e.g. {values[numbers.index(None)]!r})")
        if kind == "numeric" or (not kind and numeric):
            array = np.asarray(numbers, dtype=np.float64)
            fitted.append(ClinicalColumn(name, "numeric", float(array.mean()), float(max(array.std(), 1e-6))))
        else:
            fitted.append(ClinicalColumn(name, "categorical", categories=sorted(set(values))))
    return ClinicalSpec(str(path), fitted), table
