"""Which cells of a one-stage detector learn which box: task-aligned assignment with centre sampling (TOOD, Feng
et al. 2021, as YOLOv8 uses it), in 2D and 3D.

Candidates of a ground-truth box are the cells whose centre lies inside it, and always the cell holding its
centre on every level (centre sampling, so a box smaller than a cell still has candidates). Each candidate is
scored by how well the model already does there, score(class)^ALPHA x IoU(predicted box, box)^BETA; the TOPK best
become positives, a cell claimed by several boxes going to the one it overlaps most. The classification target of
a positive is IoU-aware: its alignment normalised so the box's best cell gets the box's best IoU (varifocal loss
then learns scores that rank by localisation quality).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medattn.layers.boxes import box_iou

TOPK, ALPHA, BETA = 10, 1.0, 6.0


@dataclass
class Assignment:
    positive: torch.Tensor  # (P,) bool
    boxes: torch.Tensor  # (P, 2D) the assigned box of each positive cell (zeros elsewhere)
    scores: torch.Tensor  # (P, K) soft classification targets, 0 off the positives


def candidates(centres: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(G, P) cells inside each box, or holding its centre."""
    dims = centres.shape[1]
    inside = ((centres[None] > boxes[:, None, :dims]) & (centres[None] < boxes[:, None, dims:])).all(dim=2)
    middle = (boxes[:, :dims] + boxes[:, dims:]) / 2  # (G, D)
    holding = ((centres[None] - middle[:, None]).abs() <= strides[None, :, None] / 2).all(dim=2)
    return inside | holding


@torch.no_grad()
def assign(
    scores: torch.Tensor,
    predicted: torch.Tensor,
    centres: torch.Tensor,
    strides: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
) -> Assignment:
    """Targets of one image: class probabilities (P, K) and predicted boxes (P, 2D) against its boxes (G, 2D)."""
    cells, classes = scores.shape
    positive = torch.zeros(cells, dtype=torch.bool, device=scores.device)
    target_boxes = torch.zeros_like(predicted)
    target_scores = torch.zeros_like(scores)
    if len(boxes) == 0:
        return Assignment(positive, target_boxes, target_scores)
    allowed = candidates(centres, strides, boxes)  # (G, P)
    overlap = box_iou(boxes, predicted).clamp_min(0) * allowed  # (G, P)
    alignment = scores[:, labels].T.pow(ALPHA) * overlap.pow(BETA)  # (G, P)
    alignment = torch.where(allowed, alignment, torch.full_like(alignment, -1.0))
    best = torch.topk(alignment, min(TOPK, cells), dim=1).indices  # (G, k)
    chosen = torch.zeros_like(allowed).scatter_(1, best, True) & allowed  # (G, P)
    # a cell claimed by several boxes goes to the one it overlaps most
    claims = chosen.sum(dim=0)
    if bool((claims > 1).any()):
        winner = torch.where(chosen, overlap, torch.full_like(overlap, -1.0)).argmax(dim=0)  # (P,)
        chosen = chosen & (torch.arange(len(boxes), device=boxes.device)[:, None] == winner[None])
    positive = chosen.any(dim=0)
    owner = chosen.float().argmax(dim=0)  # (P,) the box of each positive cell
    alignment = alignment.clamp_min(0) * chosen
    best_alignment = alignment.amax(dim=1, keepdim=True).clamp_min(1e-9)  # (G, 1)
    best_overlap = (overlap * chosen).amax(dim=1, keepdim=True)  # (G, 1)
    quality = (alignment * best_overlap / best_alignment).amax(dim=0)  # (P,)
    target_boxes[positive] = boxes[owner[positive]]
    target_scores[positive, labels[owner[positive]]] = quality[positive]
    return Assignment(positive, target_boxes, target_scores)
