"""Box geometry in 2D and 3D, written in torch: sizes, IoU, generalised and distance IoU, (batched) NMS.

A box is [lo_0, ..., lo_{D-1}, hi_0, ..., hi_{D-1}] along the array's spatial axes, in continuous pixel or
voxel coordinates: pixel i spans [i, i + 1), so a box around pixels 2..4 of an axis is [2, 5). That is MONAI's
StandardMode (xyxy, xyzxyz) with x the first array axis. D comes from the last axis: 4 numbers are a 2D box,
6 a 3D one, so every function here serves both.
"""

from __future__ import annotations

import numpy as np
import torch

from medattn.errors import ConfigError

EPS = 1e-7


def box_dims(boxes: torch.Tensor) -> int:
    """2 or 3, from the box length (4 or 6)."""
    size = boxes.shape[-1]
    if size not in (4, 6):
        raise ConfigError(f"boxes need 4 (2D) or 6 (3D) coordinates each, found {size}")
    return size // 2


def box_sizes(boxes: torch.Tensor) -> torch.Tensor:
    """(..., D) side lengths, 0 for an inverted box."""
    dims = box_dims(boxes)
    return (boxes[..., dims:] - boxes[..., :dims]).clamp_min(0)


def box_volume(boxes: torch.Tensor) -> torch.Tensor:
    """(...,) area (2D) or volume (3D)."""
    return box_sizes(boxes).prod(dim=-1)


def box_centres(boxes: torch.Tensor) -> torch.Tensor:
    dims = box_dims(boxes)
    return (boxes[..., :dims] + boxes[..., dims:]) / 2


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) intersection over union of every box of `a` (N, 2D) with every box of `b` (M, 2D)."""
    dims = box_dims(a)
    lo = torch.maximum(a[:, None, :dims], b[None, :, :dims])
    hi = torch.minimum(a[:, None, dims:], b[None, :, dims:])
    inter = (hi - lo).clamp_min(0).prod(dim=-1)
    union = box_volume(a)[:, None] + box_volume(b)[None, :] - inter
    return inter / union.clamp_min(EPS)


def aligned_iou(a: torch.Tensor, b: torch.Tensor, *, kind: str = "iou") -> torch.Tensor:
    """(...,) IoU of the pairs a[i], b[i]; `giou` subtracts the empty share of the enclosing box (Rezatofighi et
    al. 2019), `diou` the squared centre distance over the enclosing box's squared diagonal (Zheng et al. 2020)."""
    dims = box_dims(a)
    lo = torch.maximum(a[..., :dims], b[..., :dims])
    hi = torch.minimum(a[..., dims:], b[..., dims:])
    inter = (hi - lo).clamp_min(0).prod(dim=-1)
    union = box_volume(a) + box_volume(b) - inter
    iou = inter / union.clamp_min(EPS)
    if kind == "iou":
        return iou
    outer_lo = torch.minimum(a[..., :dims], b[..., :dims])
    outer_hi = torch.maximum(a[..., dims:], b[..., dims:])
    if kind == "giou":
        enclosing = (outer_hi - outer_lo).prod(dim=-1)
        return iou - (enclosing - union) / enclosing.clamp_min(EPS)
    if kind == "diou":
        diagonal = (outer_hi - outer_lo).square().sum(dim=-1)
        distance = (box_centres(a) - box_centres(b)).square().sum(dim=-1)
        return iou - distance / diagonal.clamp_min(EPS)
    raise ConfigError(f"IoU kind {kind!r} is not one of iou, giou, diou")


def clip_boxes(boxes: torch.Tensor, shape) -> torch.Tensor:
    """Boxes cut to an image of spatial `shape` (its array axes)."""
    dims = box_dims(boxes)
    limit = torch.as_tensor([float(s) for s in shape], dtype=boxes.dtype, device=boxes.device)
    lo = torch.minimum(boxes[..., :dims].clamp_min(0), limit)
    hi = torch.minimum(boxes[..., dims:].clamp_min(0), limit)
    return torch.cat([lo, hi], dim=-1)


CLUSTER_LIMIT = 4096  # boxes up to which NMS works on the whole IoU matrix at once


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy non-maximum suppression keeps, highest score first.

    Up to CLUSTER_LIMIT boxes it iterates on the IoU matrix as Cluster-NMS does (Zheng et al. 2021): a box is kept
    when no kept box above it overlaps it by more than the threshold; repeating that from "all kept" reaches
    greedy NMS's answer exactly, in a few matrix passes instead of a pass per box. Beyond the limit each kept box is
    compared with the boxes after it, so memory stays O(N).
    """
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    ranked = boxes[order].detach().float()
    if len(ranked) <= CLUSTER_LIMIT:
        suppresses = (box_iou(ranked, ranked) > iou_threshold).triu_(diagonal=1)  # [j, i]: j above i overlaps it
        keep = torch.ones(len(ranked), dtype=torch.bool, device=ranked.device)
        for _ in range(len(ranked)):
            again = ~(suppresses & keep[:, None]).any(dim=0)
            if torch.equal(again, keep):
                break
            keep = again
        return order[keep]
    return order[_greedy(ranked.cpu().double().numpy(), iou_threshold).to(order.device)]


def _greedy(ranked: np.ndarray, iou_threshold: float) -> torch.Tensor:
    """Positions kept among boxes (N, 2D) sorted by score, one kept box at a time."""
    dims = ranked.shape[1] // 2
    lo, hi = ranked[:, :dims], ranked[:, dims:]
    volume = np.clip(hi - lo, 0, None).prod(axis=1)
    alive = np.ones(len(ranked), dtype=bool)
    keep = []
    for i in range(len(ranked)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        if rest.size == 0:
            break
        inter = np.clip(np.minimum(hi[i], hi[rest]) - np.maximum(lo[i], lo[rest]), 0, None).prod(axis=1)
        iou = inter / np.maximum(volume[i] + volume[rest] - inter, EPS)
        alive[rest[iou > iou_threshold]] = False
    return torch.as_tensor(keep, dtype=torch.long)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Class-aware NMS: boxes of different labels never suppress each other. Indices kept, highest score first."""
    kept = [
        torch.nonzero(labels == label).flatten()[nms(boxes[labels == label], scores[labels == label], iou_threshold)]
        for label in torch.unique(labels)
    ]
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    index = torch.cat(kept)
    return index[torch.argsort(scores[index], descending=True, stable=True)]
