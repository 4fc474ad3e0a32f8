"""The heads of a multi-task run (`--heads`) and how their losses are weighted (`--head-weights`).

A head is `segmentation` (the masks), `classification:COLUMN` (a class per image from a manifest/CSV column;
`classification:foreground` is derived: 1 when the image's mask has any foreground) or `regression:COLUMN` (a
number per image). At most one segmentation head; at least one head; no head twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medattn.errors import ConfigError

SEGMENTATION, CLASSIFICATION, REGRESSION = "segmentation", "classification", "regression"
KINDS = (SEGMENTATION, CLASSIFICATION, REGRESSION)
FOREGROUND = "foreground"  # classification:foreground, derived from the masks
UNCERTAINTY = "uncertainty"


@dataclass(frozen=True)
class Head:
    kind: str
    column: str | None = None  # the manifest/CSV column (None for segmentation)

    @property
    def name(self) -> str:
        """The key of its output in the model's dict, its section in evaluate's JSON."""
        return self.kind if self.column is None else f"{self.kind}:{self.column}"

    @property
    def derived(self) -> bool:
        return self.kind == CLASSIFICATION and self.column == FOREGROUND


def parse_heads(specs: list[str] | None) -> list[Head]:
    """`["segmentation", "classification:grade"]` -> heads, or a ConfigError naming the bad one."""
    if not specs:
        raise ConfigError("data.heads (--heads) names no head; e.g. --heads segmentation,classification:foreground")
    heads = []
    for spec in specs:
        kind, _, column = (part.strip() for part in spec.partition(":"))
        if kind not in KINDS:
            raise ConfigError(f"--heads {spec!r}: the kind must be one of {', '.join(KINDS)}")
        if kind == SEGMENTATION and column:
            raise ConfigError(f"--heads {spec!r}: the segmentation head reads the masks and names no column")
        if kind != SEGMENTATION and not column:
            raise ConfigError(f"--heads {spec!r}: name its column, e.g. {kind}:grade")
        heads.append(Head(kind, column or None))
    names = [h.name for h in heads]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--heads names {', '.join(repeated)} more than once")
    return heads


def parse_weights(text: str | None, heads: list[Head]) -> list[float] | None:
    """Fixed weights, one per head in order, or None for learned uncertainty weighting (the default)."""
    if text is None or text.strip() == UNCERTAINTY:
        return None
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--head-weights {text!r}: expected {UNCERTAINTY} or numbers such as 1,0.5") from None
    if len(weights) != len(heads):
        names = ", ".join(h.name for h in heads)
        raise ConfigError(f"--head-weights {text!r}: {len(weights)} weight(s) for {len(heads)} heads ({names})")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise ConfigError(f"--head-weights {text!r}: weights must be finite, >= 0 and not all 0")
    return weights
