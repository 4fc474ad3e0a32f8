"""`medattn data inspect` for detection data: what the boxes are like and what could go wrong.

Per split: images, boxes, patients and patients in more than one split (leakage); boxes per image (min, median,
max) and the images without any; per class: boxes, their sides in pixels and in mm (median, 5th and 95th
percentiles per axis, axes as the CSV names them) and aspect ratios (longest over shortest side); bad boxes (no
area, an unknown class, outside the image) counted instead of refused; image shapes, spacing and stored types.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

import numpy as np

from medattn.config import RunConfig


def _quantiles(values: np.ndarray) -> dict:
    return {
        "median": float(np.median(values)),
        "p5": float(np.quantile(values, 0.05)),
        "p95": float(np.quantile(values, 0.95)),
    }


def inspect_detection(config: RunConfig, *, progress=iter) -> dict:
    from medattn.tasks.detect.checks import dropped_note
    from medattn.tasks.detect.data import read_item
    from medattn.tasks.detect.sources import CSV_BOX_COLUMNS, file_corners, open_configured

    source = open_configured(config.data, drop_bad_boxes=True)  # bad boxes are counted, not refused
    sides: dict[int, list] = defaultdict(list)  # class -> rows of (pixel sides..., mm sides...)
    per_image, empty, shapes, spacings, dtypes = [], [], Counter(), Counter(), Counter()
    outside: Counter = Counter()
    items = [item for split in source.splits.values() for item in split]
    for item in progress(items):
        image, meta, dropped = read_item(item, drop=True)
        outside += dropped
        dims = item.spatial_dims
        spacing = np.asarray(meta.spacing[:dims], dtype=np.float64)
        pixel = file_corners(item.boxes)
        size = pixel[:, dims:] - pixel[:, :dims]  # (N, D), CSV axis order
        in_file_order = spacing[[1, 0]] if dims == 2 else spacing
        for label, side in zip(item.labels, size, strict=True):
            sides[int(label)].append(np.concatenate([side, side * in_file_order]))
        per_image.append(len(item.boxes))
        if not len(item.boxes):
            empty.append(item.image)
        shapes["x".join(map(str, image.shape))] += 1
        spacings["x".join(f"{s:.4g}" for s in spacing)] += 1
        dtypes[str(image.dtype)] += 1
    dims = source.spatial_dims
    axes = [c[0] for c in CSV_BOX_COLUMNS[dims][:dims]]
    classes = {}
    for k, name in enumerate(source.class_names):
        rows = np.asarray(sides.get(k, []), dtype=np.float64).reshape(-1, 2 * dims)
        entry = {"boxes": len(rows)}
        if len(rows):
            entry["side_px"] = {a: _quantiles(rows[:, i]) for i, a in enumerate(axes)}
            entry["side_mm"] = {a: _quantiles(rows[:, dims + i]) for i, a in enumerate(axes)}
            entry["aspect_ratio"] = _quantiles(
                rows[:, :dims].max(axis=1) / np.maximum(rows[:, :dims].min(axis=1), 1e-9)
            )
        classes[name] = entry
    return {
        "path": source.path,
        "kind": source.kind,
        "task": "detection",
        "spatial_dims": dims,
        "class_names": source.class_names,
        "splits": {name: len(split) for name, split in source.splits.items()},
        "boxes": {name: int(sum(len(i.boxes) for i in split)) for name, split in source.splits.items()},
        "patients": _patients(source),
        "boxes_per_image": {
            "min": min(per_image),
            "median": statistics.median(per_image),
            "max": max(per_image),
            "mean": statistics.fmean(per_image),
        },
        "images_without_boxes": {"count": len(empty), "examples": empty[:10]},
        "classes": classes,
        "bad_boxes": [n for n in source.notes if n.startswith("dropped")]
        + dropped_note(outside, "outside their images"),
        "images": {
            "shapes": dict(shapes.most_common(5)),
            "distinct_shapes": len(shapes),
            "dtypes": dict(dtypes),
            "spacing_mm": dict(spacings.most_common(5)),
        },
        "notes": source.notes,
    }


def _patients(source) -> dict | None:
    owners: dict[str, set] = defaultdict(set)
    for name, items in source.splits.items():
        for item in items:
            if item.patient_id:
                owners[item.patient_id].add(name)
    if not owners:
        return None
    shared = sorted(p for p, names in owners.items() if len(names) > 1)
    return {"count": len(owners), "in_more_than_one_split": len(shared), "examples": shared[:10]}


def print_inspect(r: dict) -> None:
    print(f"{r['path']} ({r['kind']}, {r['task']}, {r['spatial_dims']}D): images per split {r['splits']}")
    print(f"  boxes per split {r['boxes']}; per image {r['boxes_per_image']}")
    print(f"  images without boxes: {r['images_without_boxes']['count']}")
    if r["patients"]:
        print(f"  patients {r['patients']['count']}, in more than one split: {r['patients']['in_more_than_one_split']}")
    for name, entry in r["classes"].items():
        if not entry["boxes"]:
            print(f"  {name}: no boxes")
            continue
        px = ", ".join(f"{a} {v['median']:.1f}" for a, v in entry["side_px"].items())
        mm = ", ".join(f"{a} {v['median']:.1f}" for a, v in entry["side_mm"].items())
        ratio = entry["aspect_ratio"]
        print(
            f"  {name}: {entry['boxes']} boxes, median side px {px} (mm {mm}), aspect {ratio['median']:.2f} "
            f"[{ratio['p5']:.2f}-{ratio['p95']:.2f}]"
        )
    for note in r["bad_boxes"]:
        print(f"  {note}")
    images = r["images"]
    print(f"  shapes {images['shapes']}  dtypes {images['dtypes']}  spacing {images['spacing_mm']}")
