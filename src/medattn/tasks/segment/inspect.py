"""`medattn data inspect` for segmentation data: what the masks hold and what could go wrong.

Per split: cases, patients and patients found in more than one split (leakage); per label: voxels, the share of
all voxels, and the cases it appears in; the foreground fraction per case (min, median, max); image shapes,
spacing in mm, dtypes and intensities; masks that are empty. Every mask is read and checked against its image.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

import numpy as np

from medattn.tasks.segment.sources import open_segmentation

STAT_SAMPLE = 2000  # cases whose intensities are summarised


def inspect_segmentation(path: str, *, progress=iter) -> dict:
    from medattn.tasks.segment.cases import read_case

    source = open_segmentation(path)
    voxels: Counter = Counter()
    present: Counter = Counter()
    shapes: Counter = Counter()
    spacings: Counter = Counter()
    dtypes: Counter = Counter()
    fractions, empty, values = [], [], []
    cases = [(name, case) for name, split in source.splits.items() for case in split]
    for _, case in progress(cases):
        item = read_case(case)
        labels, counts = np.unique(item.mask, return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            voxels[int(label)] += int(count)
            present[int(label)] += 1
        foreground = float((item.mask > 0).mean())
        fractions.append(foreground)
        if foreground == 0:
            empty.append(case.name)
        shapes["x".join(map(str, item.image.shape))] += 1
        spacings["x".join(f"{s:.4g}" for s in item.meta.spacing[: item.spatial_dims])] += 1
        dtypes[str(item.image.dtype)] += 1
        if len(values) < STAT_SAMPLE:
            image = item.image.astype(np.float64)
            values.append((float(image.min()), float(image.max()), float(image.mean()), float(image.std())))
    total = sum(voxels.values())
    names = source.class_names
    label_name = {k: (names[k] if names and k < len(names) else str(k)) for k in voxels}
    binary_255 = set(voxels) <= {0, 255} and 255 in voxels
    lows, highs, means, stds = zip(*values, strict=True) if values else ((), (), (), ())
    return {
        "path": source.path,
        "kind": source.kind,
        "task": "segmentation",
        "class_names": names,
        "channel_names": source.channel_names,
        "splits": {name: len(split) for name, split in source.splits.items()},
        "patients": _patients(source),
        "labels": {
            label_name[k]: {
                "value": k,
                "voxels": voxels[k],
                "fraction": voxels[k] / total,
                "cases": present[k],
            }
            for k in sorted(voxels)
        },
        "masks_0_255": binary_255,
        "foreground_fraction": {
            "min": min(fractions),
            "median": statistics.median(fractions),
            "max": max(fractions),
        },
        "empty_masks": {"count": len(empty), "examples": empty[:10]},
        "images": {
            "shapes": dict(shapes.most_common(5)),
            "distinct_shapes": len(shapes),
            "dtypes": dict(dtypes),
            "spacing_mm": dict(spacings.most_common(5)),
            "intensity": {
                "min": min(lows),
                "max": max(highs),
                "mean": statistics.fmean(means),
                "std": statistics.fmean(stds),
            }
            if values
            else None,
        },
    }


def _patients(source) -> dict | None:
    owners: dict[str, set] = defaultdict(set)
    per_split = {}
    for name, cases in source.splits.items():
        ids = {c.patient_id for c in cases if c.patient_id}
        per_split[name] = len(ids)
        for patient in ids:
            owners[patient].add(name)
    if not owners:
        return None
    shared = sorted(p for p, names in owners.items() if len(names) > 1)
    return {"per_split": per_split, "in_more_than_one_split": len(shared), "examples": shared[:10]}


def print_inspect(r: dict) -> None:
    print(f"{r['path']} ({r['kind']}, {r['task']}): cases per split {r['splits']}")
    if r["patients"]:
        print(
            f"  patients per split {r['patients']['per_split']}; "
            f"in more than one split: {r['patients']['in_more_than_one_split']}"
        )
    for name, row in r["labels"].items():
        share = f"{row['voxels']:>12} voxels ({row['fraction']:.2%})"
        print(f"  label {row['value']} {name:<12} {share} in {row['cases']} cases")
    f = r["foreground_fraction"]
    print(f"  foreground per case: min {f['min']:.2%}, median {f['median']:.2%}, max {f['max']:.2%}")
    print(f"  empty masks: {r['empty_masks']['count']}" + (" (masks hold 0/255)" if r["masks_0_255"] else ""))
    images = r["images"]
    print(f"  shapes {images['shapes']}  dtypes {images['dtypes']}  spacing {images['spacing_mm']}")
    print(f"  intensity {images['intensity']}")
