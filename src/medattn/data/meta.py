"""What every reader returns beside the pixels: spacing, affine, orientation, modality, source.

Convention shared by all readers: the affine maps voxel indices of the *spatial* axes, in array order,
to RAS+ world millimetres (nibabel's convention). So `affine @ [i, j, k, 1]` is the world position of
`array[c, i, j, k]`. A 2D image gets a 4x4 affine whose third column is a unit slice normal.

Also home to the helpers every reader and writer shares: `reading`, `require_finite` and `write_atomically`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import MedattnError, ReadError
from medattn.runs import write_atomically  # noqa: F401  (re-exported for the writers)


@dataclass
class ImageMeta:
    """Geometry and provenance of one image (see the module docstring for the affine convention)."""

    spacing: tuple[float, ...]  # mm per spatial axis, in array order
    affine: np.ndarray  # (4, 4), spatial voxel index (array order) -> RAS+ mm
    orientation: str = ""  # one axis code per spatial axis, e.g. "RAS"; "" for plain rasters
    modality: str = "OT"  # DICOM modality code; "OT" (other) when the format has none
    source: str = ""
    series_uid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise here so every consumer can rely on the types, whoever built the meta.
        self.spacing = tuple(float(s) for s in self.spacing)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {self.affine.shape}")
        if len(self.spacing) not in (2, 3):
            raise ValueError(f"spacing must have 2 or 3 entries (one per spatial axis), got {self.spacing}")

    @property
    def spatial_dims(self) -> int:
        return len(self.spacing)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able types only (lists, floats, strings), so it can go into model.json."""
        return {
            "spacing": [float(s) for s in self.spacing],
            "affine": self.affine.tolist(),
            "orientation": self.orientation,
            "modality": self.modality,
            "source": self.source,
            "series_uid": self.series_uid,
            "extra": {str(k): to_plain(v) for k, v in self.extra.items()},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ImageMeta:
        missing = [key for key in ("spacing", "affine") if key not in raw]
        if missing:
            raise ValueError(f"image meta is missing {', '.join(missing)} (found keys: {sorted(raw)})")
        return cls(
            spacing=tuple(raw["spacing"]),
            affine=np.asarray(raw["affine"], dtype=np.float64),
            orientation=str(raw.get("orientation", "")),
            modality=str(raw.get("modality", "OT")),
            source=str(raw.get("source", "")),
            series_uid=raw.get("series_uid"),
            extra=dict(raw.get("extra", {})),
        )


def to_plain(value: Any) -> Any:
    """JSON-able copy: pydicom's MultiValue, DSfloat, PersonName and numpy scalars become plain types."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool):
        return value
    # pydicom's DSfloat / IS subclass float / int: rebuild the base type so YAML and JSON see plain values.
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | Sequence) and not isinstance(value, bytes | bytearray):
        return [to_plain(v) for v in value]
    return str(value)


def orientation_codes(affine: np.ndarray, spatial_dims: int = 3) -> str:
    """Axis codes ("RAS", "LPS", ...) of the first `spatial_dims` affine columns; "?" for a degenerate axis."""
    from nibabel.orientations import aff2axcodes

    codes = aff2axcodes(np.asarray(affine, dtype=np.float64))
    return "".join(code or "?" for code in codes[:spatial_dims])


def raster_meta(source: str, *, spatial_dims: int = 2, extra: dict[str, Any] | None = None) -> ImageMeta:
    """Plain pictures carry no geometry: unit spacing, identity affine, no orientation codes."""
    return ImageMeta(
        spacing=(1.0,) * spatial_dims,
        affine=np.eye(4),
        orientation="",
        modality="OT",
        source=source,
        extra=dict(extra or {}),
    )


def require_finite(array: np.ndarray, path: str | Path, *, what: str = "pixel") -> None:
    """NaN or Inf in float pixels poisons every loss and metric downstream: refuse them at the door."""
    if array.dtype.kind not in "fc":
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ReadError(path, f"{bad} NaN or infinite {what} value(s) out of {array.size}")


@contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Whatever a decoding library raises inside the block becomes one ReadError naming `path` and keeping the
    library's own words; medattn's typed errors pass through.

    Deliberately broad: pydicom, nibabel, Pillow and zlib raise struct.error, NotImplementedError, their own
    exception types and MemoryError for damaged files, and a reader must answer every one of them the same way.
    """
    try:
        yield
    except MedattnError:
        raise
    except MemoryError as error:
        raise ReadError(path, f"{what}: its header asks for more memory than this machine has (damaged?)") from error
    except Exception as error:
        raise ReadError(path, f"{what} ({type(error).__name__}: {error})") from error
