"""Bad boxes: an error naming the annotation and the reason, or dropped with a count (`--drop-bad-boxes`).

A box is bad when it has no area (a side of zero or less), when its class is not one of the declared classes, or
when it lies outside its image by more than TOLERANCE pixels (voxels) on some side. Boxes within the tolerance
are cut to the image: annotation tools often round the far edge one pixel out. The first two are checked when
the data is opened; the last when the image is read, since only then is its size known.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from medattn.errors import DataError

TOLERANCE = 1.0


def _reasons(item, shape=None) -> list[str | None]:
    """Per box of `item`: why it is bad, or None."""
    dims = item.spatial_dims
    reasons: list[str | None] = []
    for k, box in enumerate(item.boxes):
        reason = None
        if not np.all(np.isfinite(box)):
            reason = "non-finite coordinates"
        elif np.any(box[dims:] <= box[:dims]):
            reason = "no area (a far edge at or before its near edge)"
        elif item.labels[k] < 0:
            name = item.names[k] if k < len(item.names) else "?"
            reason = f"class {name!r} is not one of the declared classes"
        elif shape is not None and (
            np.any(box[:dims] < -TOLERANCE) or np.any(box[dims:] > np.asarray(shape, dtype=np.float32) + TOLERANCE)
        ):
            reason = f"outside the image of size {list(shape)}"
        reasons.append(reason)
    return reasons


def _apply(items, reasons_of, *, drop: bool) -> Counter:
    """Drop (or refuse) the bad boxes of `items`; the count of those dropped per reason."""
    dropped: Counter = Counter()
    for item in items:
        reasons = reasons_of(item)
        bad = [k for k, r in enumerate(reasons) if r is not None]
        if not bad:
            continue
        if not drop:
            from medattn.tasks.detect.sources import file_corners

            k = bad[0]
            written = [round(float(v), 3) for v in file_corners(item.boxes[k : k + 1])[0]]
            raise DataError(
                f"{item.origin(k)}: box {written} of {item.image} is bad: {reasons[k]} "
                f"({len(bad)} bad box(es) in this image; --drop-bad-boxes drops them with a count)"
            )
        keep = np.asarray([r is None for r in reasons])
        item.boxes, item.labels = item.boxes[keep], item.labels[keep]
        item.names = [n for n, k in zip(item.names, keep, strict=False) if k]
        item.origins = [o for o, k in zip(item.origins, keep, strict=False) if k]
        dropped.update(
            "class not declared" if "class" in r else r.split(" (")[0].split(" of size")[0]
            for r in reasons
            if r is not None
        )
    return dropped


def dropped_note(dropped: Counter, what: str) -> list[str]:
    """The card's note on the boxes dropped, or none."""
    if not dropped:
        return []
    detail = ", ".join(f"{count} {reason}" for reason, count in dropped.most_common())
    return [f"dropped {sum(dropped.values())} bad box(es) {what}: {detail}"]


def check_annotations(source, *, drop: bool) -> list[str]:
    """Boxes without area or with an unknown class, in every split: notes on what was dropped."""
    items = [item for split in source.splits.values() for item in split]
    return dropped_note(_apply(items, _reasons, drop=drop), "when opening the data")


def check_inside(item, shape, *, drop: bool) -> Counter:
    """Boxes of `item` outside its image of spatial `shape` (dropped or refused); those within TOLERANCE are cut
    to it. The count dropped per reason."""
    dropped = _apply([item], lambda it: _reasons(it, shape), drop=drop)
    limit = np.asarray(list(shape) * 2, dtype=np.float32)
    item.boxes = np.clip(item.boxes, 0, limit).astype(np.float32)
    return dropped
