"""Detecting boxes in a whole image, 2D or 3D, as the run's card says (plan.py).

An image no larger than the plan's window is run whole. A larger one is covered by overlapping tiles of the
window's size, overlapping by at least the largest training box (plan.py), so every object lies whole in some
tile; a tile drops the boxes that touch one of its edges inside the image (a neighbour holds those whole), and the
boxes of all tiles are merged by class-aware NMS. The members of a fold ensemble each detect with their own card;
their boxes are pooled and merged the same way. Boxes come back in the pixels of the image as read.
"""

from __future__ import annotations

import math

import torch

from medattn.layers.boxes import batched_nms, clip_boxes
from medattn.models.detector import DEFAULT_DETECTIONS
from medattn.tasks.detect.plan import DetectionPlan

EDGE = 2.0  # pixels: a box this close to a tile edge inside the image is left to the neighbouring tile


def tile_starts(size: int, window: int, overlap: int) -> list[int]:
    """Starts of tiles of `window` covering `size`, consecutive ones overlapping by at least `overlap`."""
    if size <= window:
        return [0]
    count = math.ceil((size - overlap) / (window - overlap))
    step = (size - window) / (count - 1)
    return [round(i * step) for i in range(count)]


def _empty(dims: int, device) -> dict:
    return {
        "boxes": torch.zeros(0, 2 * dims, device=device),
        "scores": torch.zeros(0, device=device),
        "labels": torch.zeros(0, dtype=torch.long, device=device),
    }


def _merge(parts: list[dict], dims: int, *, iou_threshold: float, max_detections: int) -> dict:
    if not parts:
        return _empty(dims, "cpu")
    boxes = torch.cat([p["boxes"] for p in parts])
    scores = torch.cat([p["scores"] for p in parts])
    labels = torch.cat([p["labels"] for p in parts])
    keep = batched_nms(boxes, scores, labels, iou_threshold)[:max_detections]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def detect_prepared(model, x: torch.Tensor, plan: DetectionPlan, *, device, settings: dict | None = None) -> dict:
    """Boxes in the pixels of x (C, *S), a standardised input as `plan` prepares it; on the CPU."""
    settings = {**DEFAULT_DETECTIONS, **(settings or {})}
    dims = x.ndim - 1
    shape = list(x.shape[1:])
    window = plan.window if plan.native and plan.window else shape
    if all(s <= w for s, w in zip(shape, window, strict=True)):
        found = model.detect(x[None].to(device), **settings)[0]
        return {k: v.cpu() for k, v in found.items()}
    overlap = plan.overlap or [w // 4 for w in window]
    starts = [tile_starts(s, w, o) for s, w, o in zip(shape, window, overlap, strict=True)]
    parts = []
    for corner in _grid(starts):
        tile = x[(slice(None), *(slice(c, c + w) for c, w in zip(corner, window, strict=True)))]
        found = {k: v.cpu() for k, v in model.detect(tile[None].to(device), **settings)[0].items()}
        boxes = found["boxes"]
        keep = torch.ones(len(boxes), dtype=torch.bool)
        for axis, (c, extent) in enumerate(zip(corner, tile.shape[1:], strict=True)):
            if c > 0:
                keep &= boxes[:, axis] > EDGE
            if c + extent < shape[axis]:
                keep &= boxes[:, dims + axis] < extent - EDGE
        offset = torch.tensor(list(corner) * 2, dtype=boxes.dtype)
        parts.append({"boxes": boxes[keep] + offset, "scores": found["scores"][keep], "labels": found["labels"][keep]})
    return _merge(parts, dims, iou_threshold=settings["iou_threshold"], max_detections=settings["max_detections"])


def _grid(starts: list[list[int]]):
    if not starts:
        yield ()
        return
    for first in starts[0]:
        for rest in _grid(starts[1:]):
            yield (first, *rest)


def detect_image(members, image, *, where: str, device, settings: dict | None = None) -> dict:
    """Boxes in the pixels of `image` (C, *S) as read, from one run or the pooled members of an ensemble."""
    settings = {**DEFAULT_DETECTIONS, **(settings or {})}
    parts = []
    for member in members:
        plan = DetectionPlan.from_card(member.card)
        x, scale = plan.prepare(image, where=where)
        shape = plan.spec().fit(image, where=where).shape[1:]  # a one-slice NIfTI given to a 2D model: its 2D grid
        found = detect_prepared(member.model, x, plan, device=device, settings=settings)
        found["boxes"] = clip_boxes(found["boxes"] / scale, shape)
        parts.append(found)
    if len(parts) == 1:
        return parts[0]
    dims = parts[0]["boxes"].shape[1] // 2
    return _merge(parts, dims, iou_threshold=settings["iou_threshold"], max_detections=settings["max_detections"])
