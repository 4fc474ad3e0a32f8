"""FROC as LUNA16 scores lesion detection: sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per image
(per scan), and their mean, in 2D and 3D.

A detection hits a ground-truth box of its class when its centre lies inside it (LUNA16: a candidate inside the
nodule's radius). In score order each hit takes the nearest unhit box; a detection whose boxes are all hit
already is a duplicate and neither counts as a hit nor as a false positive (LUNA16 keeps a nodule's best
candidate); a detection inside no box is a false positive. The sensitivity at a rate is that of the lowest score
threshold whose false positives per image stay at or below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class ImageHits:
    scores: np.ndarray  # (D,) counted detections (duplicates left out)
    hit: np.ndarray  # (D,) bool: a new hit (else a false positive)
    boxes: int  # ground-truth boxes in the image


def hits_of(pred: dict, truth: dict) -> ImageHits:
    scores, labels, boxes = (np.asarray(pred[k]) for k in ("scores", "labels", "boxes"))
    gt_boxes, gt_labels = np.asarray(truth["boxes"], dtype=np.float64), np.asarray(truth["labels"])
    dims = gt_boxes.shape[1] // 2 if gt_boxes.ndim == 2 and gt_boxes.shape[1] else 2
    order = np.argsort(-scores, kind="mergesort")
    taken = np.zeros(len(gt_boxes), dtype=bool)
    kept, hit = [], []
    middle = (gt_boxes[:, :dims] + gt_boxes[:, dims:]) / 2
    for d in order:
        centre = (boxes[d, :dims] + boxes[d, dims:]) / 2
        inside = (gt_labels == labels[d]) & np.all(
            (centre >= gt_boxes[:, :dims]) & (centre <= gt_boxes[:, dims:]), axis=1
        )
        if not inside.any():
            kept.append(d)
            hit.append(False)
            continue
        free = np.flatnonzero(inside & ~taken)
        if not len(free):
            continue  # a duplicate
        nearest = free[np.argmin(np.square(middle[free] - centre).sum(axis=1))]
        taken[nearest] = True
        kept.append(d)
        hit.append(True)
    return ImageHits(scores[kept] if kept else np.zeros(0), np.asarray(hit, dtype=bool), len(gt_boxes))


def weighted_froc(images: list[ImageHits], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean sensitivity (B,), sensitivity at each rate (B, 7)) with image i weighted weights[:, i]."""
    scores = np.concatenate([im.scores for im in images]) if images else np.zeros(0)
    hit = np.concatenate([im.hit for im in images]) if images else np.zeros(0, dtype=bool)
    image = np.concatenate([np.full(len(im.scores), i) for i, im in enumerate(images)]).astype(np.int64)
    boxes = np.asarray([im.boxes for im in images], dtype=float)
    total, count = weights @ boxes, weights.sum(axis=1)  # (B,)
    at = np.zeros((len(weights), len(RATES)))
    if len(scores):
        order = np.argsort(-scores, kind="mergesort")
        w = weights[:, image[order]]
        found = np.cumsum(w * hit[order], axis=1)  # (B, D)
        false = np.cumsum(w * ~hit[order], axis=1) / np.maximum(count, 1e-12)[:, None]
        for j, rate in enumerate(RATES):
            # the last detection before the false positives per image pass the rate; nothing kept: 0
            last = (false <= rate).sum(axis=1) - 1
            at[:, j] = np.where(last >= 0, np.take_along_axis(found, np.maximum(last, 0)[:, None], axis=1)[:, 0], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        at = np.where(total[:, None] > 0, at / total[:, None], np.nan)
    return at.mean(axis=1), at


def froc(images: list[ImageHits]) -> dict:
    mean, at = weighted_froc(images, np.ones((1, len(images))))
    return {"froc": float(mean[0]), "froc_sensitivity": {f"{r:g}": float(v) for r, v in zip(RATES, at[0], strict=True)}}
