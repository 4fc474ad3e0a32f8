"""COCO detection metrics in 2D and 3D, with bootstrap confidence intervals over images.

Matching follows COCO's evaluateImg: per image and class, detections in score order each take the unmatched
ground-truth box of highest IoU at or above the threshold, preferring boxes of the size range being scored (the
others are ignored, as are unmatched detections outside the range). AP is COCO's 101-point interpolated average
precision, mAP its mean over classes (and IoU thresholds 0.50:0.05:0.95 for `map`); AR@100 the recall with at
most 100 detections per image and class, averaged likewise. Sizes are box sides (the square root of the area in
2D, the cube root of the volume in 3D) against COCO's 32 and 96 pixels. Unlike COCO's 100, AP keeps up to
MAX_DETECTIONS detections per image and class, as crowded images (hundreds of cells) would otherwise cap recall.

Resampling images with replacement weighs each image by how often it was drawn, so a resample's AP is the AP of
weighted detections (cumulative sums of weights in score order): every resample reuses one sorting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
SIZE_RANGES = {"all": (0.0, math.inf), "small": (0.0, 32.0), "medium": (32.0, 96.0), "large": (96.0, math.inf)}
MAX_DETECTIONS, AR_DETECTIONS = 1000, 100


@dataclass
class ImageResult:
    """One image's detections, matched: what AP and its bootstrap need."""

    scores: np.ndarray  # (D,) float
    labels: np.ndarray  # (D,) int
    rank: np.ndarray  # (D,) rank of each detection among its image's detections of its class
    tp: np.ndarray  # (R, T, D) bool: matched at threshold t, scoring size range r
    ignored: np.ndarray  # (R, T, D) bool: left out of range r's counts
    gt_counts: np.ndarray  # (R, K) boxes per class that count in range r


def box_side(boxes: np.ndarray) -> np.ndarray:
    dims = boxes.shape[1] // 2
    return np.clip(boxes[:, dims:] - boxes[:, :dims], 0, None).prod(axis=1) ** (1.0 / dims)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dims = a.shape[1] // 2
    lo = np.maximum(a[:, None, :dims], b[None, :, :dims])
    hi = np.minimum(a[:, None, dims:], b[None, :, dims:])
    inter = np.clip(hi - lo, 0, None).prod(axis=2)
    volume = lambda x: np.clip(x[:, dims:] - x[:, :dims], 0, None).prod(axis=1)  # noqa: E731
    return inter / np.maximum(volume(a)[:, None] + volume(b)[None] - inter, 1e-12)


def match_image(pred: dict, truth: dict, num_classes: int) -> ImageResult:
    """Match one image's detections {"boxes", "scores", "labels"} to its ground truth {"boxes", "labels"}."""
    ranges = list(SIZE_RANGES.values())
    scores, labels, boxes = (np.asarray(pred[k]) for k in ("scores", "labels", "boxes"))
    order = np.argsort(-scores, kind="mergesort")
    scores, labels, boxes = scores[order], labels[order].astype(np.int64), boxes[order].astype(np.float64)
    rank = np.zeros(len(scores), dtype=np.int64)
    for k in np.unique(labels):
        rank[labels == k] = np.arange(int((labels == k).sum()))
    keep = rank < MAX_DETECTIONS
    scores, labels, boxes, rank = scores[keep], labels[keep], boxes[keep], rank[keep]
    gt_boxes, gt_labels = np.asarray(truth["boxes"], dtype=np.float64), np.asarray(truth["labels"], dtype=np.int64)
    gt_side, det_side = box_side(gt_boxes), box_side(boxes)  # both (N, 2D), N may be 0
    outside_gt = np.stack([(gt_side < lo) | (gt_side >= hi) for lo, hi in ranges])  # (R, G)
    outside_det = np.stack([(det_side < lo) | (det_side >= hi) for lo, hi in ranges])  # (R, D)
    shape = (len(ranges), len(IOU_THRESHOLDS), len(scores))
    tp, ignored = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    counts = np.zeros((len(ranges), num_classes), dtype=np.int64)
    for k in range(num_classes):
        gts = np.flatnonzero(gt_labels == k)
        counts[:, k] = (~outside_gt[:, gts]).sum(axis=1)
        dets = np.flatnonzero(labels == k)
        if not len(dets):
            continue
        ignored[:, :, dets] = outside_det[:, None, dets]  # unmatched detections outside the range
        if not len(gts):
            continue
        overlap = iou_matrix(boxes[dets], gt_boxes[gts])  # (D_k, G_k)
        ig = outside_gt[:, gts][:, None, :]  # (R, 1, G_k)
        taken = np.zeros((len(ranges), len(IOU_THRESHOLDS), len(gts)), dtype=bool)
        for row, d in enumerate(dets):
            fits = ~taken & (overlap[row][None, None] >= IOU_THRESHOLDS[None, :, None])  # (R, T, G_k)
            preference = np.where(fits & ~ig, overlap[row] + 2.0, np.where(fits, overlap[row], -1.0))
            best = preference.argmax(axis=2)  # (R, T)
            found = np.take_along_axis(preference, best[..., None], axis=2)[..., 0] >= 0
            r_idx, t_idx = np.nonzero(found)
            taken[r_idx, t_idx, best[r_idx, t_idx]] = True
            matched_ignored = np.take_along_axis(np.broadcast_to(ig, taken.shape), best[..., None], axis=2)[..., 0]
            tp[:, :, d] = found & ~matched_ignored
            ignored[:, :, d] = np.where(found, matched_ignored, ignored[:, :, d])
    return ImageResult(scores, labels, rank, tp, ignored, counts)


def weighted_ap(scores, tp, image, n_gt, weights) -> np.ndarray:
    """(B,) 101-point AP of detections pooled over images, image i weighted weights[:, i]; nan without boxes.

    scores, tp, image: (D,) of the counted detections; n_gt (N,) boxes per image; weights (B, N).
    """
    total = weights @ n_gt  # (B,)
    out = np.full(len(weights), np.nan)
    if len(scores) == 0:
        return np.where(total > 0, 0.0, np.nan)
    order = np.argsort(-scores, kind="mergesort")
    w = weights[:, image[order]]  # (B, D)
    hits = tp[order].astype(float)
    tps, fps = np.cumsum(w * hits, axis=1), np.cumsum(w * (1 - hits), axis=1)
    precision = tps / np.maximum(tps + fps, 1e-12)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    for b in np.flatnonzero(total > 0):
        recall = tps[b] / total[b]
        index = np.searchsorted(recall, RECALL_POINTS, side="left")
        values = np.where(index < len(recall), envelope[b][np.minimum(index, len(recall) - 1)], 0.0)
        out[b] = values.mean()
    return out


def pooled(results: list[ImageResult], r: int, t: int, k: int, *, limit: int = MAX_DETECTIONS):
    """(scores, tp, image index, boxes per image) of class k counted in range r at threshold t."""
    parts = [
        (res.scores[sel], res.tp[r, t][sel], np.full(int(sel.sum()), i))
        for i, res in enumerate(results)
        for sel in [(res.labels == k) & ~res.ignored[r, t] & (res.rank < limit)]
    ]
    scores = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    tp = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=bool)
    image = np.concatenate([p[2] for p in parts]).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    return scores, tp, image, np.asarray([res.gt_counts[r, k] for res in results], dtype=float)


def ap_table(results: list[ImageResult], num_classes: int, weights: np.ndarray, *, r: int = 0) -> np.ndarray:
    """(B, T, K) AP per resample, IoU threshold and class, in size range r."""
    table = np.full((len(weights), len(IOU_THRESHOLDS), num_classes), np.nan)
    for t in range(len(IOU_THRESHOLDS)):
        for k in range(num_classes):
            scores, tp, image, n_gt = pooled(results, r, t, k)
            table[:, t, k] = weighted_ap(scores, tp, image, n_gt, weights)
    return table


def mean_defined(values: np.ndarray, axis) -> np.ndarray:
    """Mean over `axis` of the defined (finite) values; nan where none is."""
    defined = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, values, 0).sum(axis=axis) / defined.sum(axis=axis)


def average_recall(results: list[ImageResult], num_classes: int) -> float:
    """COCO's AR@100: recall with the best 100 detections per image and class, over thresholds and classes."""
    recalls = np.full((len(IOU_THRESHOLDS), num_classes), np.nan)
    for t in range(len(IOU_THRESHOLDS)):
        for k in range(num_classes):
            _, tp, _, n_gt = pooled(results, 0, t, k, limit=AR_DETECTIONS)
            if n_gt.sum() > 0:
                recalls[t, k] = tp.sum() / n_gt.sum()
    return float(mean_defined(recalls, axis=None)) if np.isfinite(recalls).any() else math.nan


def coco_metrics(results: list[ImageResult], class_names: list[str], *, sizes: bool = True) -> dict:
    """map50, map, per-class AP50 and AP, AR@100 and (with `sizes`) AP by object size."""
    k = len(class_names)
    ones = np.ones((1, len(results)))
    table = ap_table(results, k, ones)[0]  # (T, K)
    metrics = {
        "map50": float(mean_defined(table[0], axis=0)),
        "map": float(mean_defined(mean_defined(table, axis=0), axis=0)),
        "ap50_per_class": {name: float(table[0, i]) for i, name in enumerate(class_names)},
        "ap_per_class": {name: float(mean_defined(table[:, i], axis=0)) for i, name in enumerate(class_names)},
        "ar100": average_recall(results, k),
    }
    if sizes:
        for r, name in enumerate(SIZE_RANGES):
            if name != "all":
                sized = ap_table(results, k, ones, r=r)[0]
                metrics[f"ap_{name}"] = float(mean_defined(mean_defined(sized, axis=0), axis=0))
    return metrics


def bootstrap_stats(results: list[ImageResult], num_classes: int):
    """{"map50": stat, "map": stat}: counts (B, N) -> (B,), for evaluate/bootstrap_ci_weighted."""

    memo: dict = {}

    def table(counts):  # both statistics read the same table of a block of resamples
        if memo.get("counts") is not counts:
            memo.update(counts=counts, table=ap_table(results, num_classes, counts.astype(float)))
        return memo["table"]

    return {
        "map50": lambda counts: mean_defined(table(counts)[:, 0], axis=1),
        "map": lambda counts: mean_defined(mean_defined(table(counts), axis=2), axis=1),
    }
