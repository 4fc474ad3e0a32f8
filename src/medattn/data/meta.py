"""What every reader returns beside the pixels: spacing, affine, orientation, modality, source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ImageMeta:
    """Geometry and provenance of one image.

    `affine` maps voxel indices of the spatial axes, in array order, to RAS+ world millimetres (the
    nibabel convention); 2D images get a 4x4 affine whose third axis is a unit slice.
    """

    spacing: tuple[float, ...]  # mm per spatial axis, in array order
    affine: np.ndarray  # (4, 4)
    orientation: str = ""  # axis codes such as "RAS"; "" for plain rasters
    modality: str = "OT"
    source: str = ""
    series_uid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return len(self.spacing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spacing": [float(s) for s in self.spacing],
            "affine": np.asarray(self.affine, dtype=float).tolist(),
            "orientation": self.orientation,
            "modality": self.modality,
            "source": self.source,
            "series_uid": self.series_uid,
            "extra": {k: _plain(v) for k, v in self.extra.items()},
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImageMeta:
        return cls(
            spacing=tuple(float(s) for s in raw["spacing"]),
            affine=np.asarray(raw["affine"], dtype=float),
            orientation=raw.get("orientation", ""),
            modality=raw.get("modality", "OT"),
            source=raw.get("source", ""),
            series_uid=raw.get("series_uid"),
            extra=dict(raw.get("extra", {})),
        )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, int | float | str | bool | type(None)) else str(value)


def orientation_codes(affine: np.ndarray) -> str:
    from nibabel.orientations import aff2axcodes

    return "".join(code or "?" for code in aff2axcodes(affine))


def raster_meta(path: str, spacing: tuple[float, float] = (1.0, 1.0)) -> ImageMeta:
    affine = np.diag([spacing[0], spacing[1], 1.0, 1.0])
    return ImageMeta(spacing=spacing, affine=affine, orientation="", modality="OT", source=path)
