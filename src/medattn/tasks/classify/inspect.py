"""`medattn data inspect`: what a dataset holds, and what could go wrong when training on it.

Counts per class and split, images per patient, image sizes, spacing and intensities, and a leakage check:
identical images (by a hash of their pixels) in more than one split, and patients in more than one split.
It ends with a recommended loss for the class imbalance it saw.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict

import numpy as np

from medattn.data.splits import Split
from medattn.tasks.classify.sources import LabelledSource

STAT_SAMPLE = 2000  # images read for intensity statistics and spacing (all are hashed)


def _pixels(split: Split, index: int):
    if split.images is not None:
        return split.images[index], None
    from medattn.data.readers import read_image

    return read_image(split.paths[index])


def _digest(array: np.ndarray) -> str:
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.blake2b(header + np.ascontiguousarray(array).tobytes(), digest_size=16).hexdigest()


def _where(split: Split, index: int) -> str | int:
    return split.paths[index] if split.paths is not None else index


def inspect_source(source: LabelledSource, *, progress=iter) -> dict:
    hashes: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    shapes: Counter = Counter()
    dtypes: Counter = Counter()
    spacings: Counter = Counter()
    values = []
    for name, split in source.splits.items():
        for i in progress(range(len(split))):
            array, meta = _pixels(split, i)
            hashes[_digest(array)][name].append(_where(split, i))
            shapes[tuple(array.shape)] += 1
            dtypes[str(array.dtype)] += 1
            if meta is not None and len(spacings) < STAT_SAMPLE:
                spacings[tuple(round(s, 4) for s in meta.spacing)] += 1
            if len(values) < STAT_SAMPLE:
                values.append((float(array.min()), float(array.max()), float(array.mean()), float(array.std())))
    across = [{"splits": {k: v[:5] for k, v in places.items()}} for places in hashes.values() if len(places) > 1]
    within = sum(len(v) - 1 for places in hashes.values() for v in places.values() if len(v) > 1)
    report = {
        "path": source.path,
        "kind": source.kind,
        "task": "classification",
        "labels": source.labels,
        "class_names": source.class_names,
        "splits": {name: len(split) for name, split in source.splits.items()},
        "class_counts": {name: source.class_counts(name) for name in source.splits},
        "patients": _patients(source),
        "images": {
            "shapes": {"x".join(map(str, s)): n for s, n in shapes.most_common(5)},
            "distinct_shapes": len(shapes),
            "dtypes": dict(dtypes),
            "spacing_mm": {"x".join(map(str, s)): n for s, n in spacings.most_common(5)} or None,
            "intensity": _intensity(values),
        },
        "duplicates_across_splits": len(across),
        "duplicate_examples": across[:10],
        "duplicates_within_splits": within,
    }
    report["recommendation"] = recommend(report["class_counts"].get("train", []), source.labels)
    return report


def _patients(source: LabelledSource) -> dict | None:
    if all(split.patient_ids is None for split in source.splits.values()):
        return None
    per_split = {name: Counter(split.patient_ids or []) for name, split in source.splits.items()}
    owners = defaultdict(set)
    for name, counts in per_split.items():
        for patient in counts:
            owners[patient].add(name)
    shared = sorted(p for p, names in owners.items() if len(names) > 1)
    return {
        "per_split": {n: len(c) for n, c in per_split.items()},
        "images_per_patient": {
            n: {"min": min(c.values()), "median": statistics.median(c.values()), "max": max(c.values())}
            for n, c in per_split.items()
            if c
        },
        "in_more_than_one_split": len(shared),
        "examples": shared[:10],
    }


def _intensity(values: list[tuple[float, float, float, float]]) -> dict | None:
    if not values:
        return None
    lows, highs, means, stds = zip(*values, strict=True)
    return {"min": min(lows), "max": max(highs), "mean": statistics.fmean(means), "std": statistics.fmean(stds)}


def recommend(counts: list[int], labels: str) -> dict:
    """A loss for the imbalance seen in train: plain CE when balanced, weights when skewed, focal when severe."""
    positive = [c for c in counts if c > 0]
    if not positive:
        return {"loss": "ce", "imbalance_ratio": None, "why": "no training labels counted"}
    ratio = max(positive) / min(positive)
    if ratio < 1.5:
        loss, why = "ce", "classes are balanced within 1.5x"
    elif ratio < 5:
        loss, why = (
            "weighted_ce",
            f"the largest class is {ratio:.1f}x the smallest: weight classes by inverse frequency",
        )
    else:
        loss, why = "focal", f"severe imbalance ({ratio:.1f}x): focal loss keeps easy majority cases from dominating"
    if labels == "multilabel":
        why += " (multi-label: counts are positives per label)"
    return {"loss": loss, "imbalance_ratio": round(ratio, 2), "why": why, "flag": f"--loss {loss}"}


def print_inspect(r: dict) -> None:
    print(f"{r['path']} ({r['kind']}, {r['task']}, {r['labels']}): classes {', '.join(r['class_names'])}")
    for split, counts in r["class_counts"].items():
        print(f"  {split:<5} {r['splits'][split]:>7} images  per class {counts}")
    if r["patients"]:
        print(
            f"  patients per split {r['patients']['per_split']}; "
            f"in more than one split: {r['patients']['in_more_than_one_split']}"
        )
    print(f"  shapes {r['images']['shapes']}  dtypes {r['images']['dtypes']}  spacing {r['images']['spacing_mm']}")
    print(f"  intensity {r['images']['intensity']}")
    print(
        f"  identical images in more than one split: {r['duplicates_across_splits']}; "
        f"repeated within a split: {r['duplicates_within_splits']}"
    )
    print(f"  recommended: {r['recommendation']['flag']} ({r['recommendation']['why']})")
