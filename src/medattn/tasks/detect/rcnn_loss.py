"""Training a two-stage detector (models/faster_rcnn.py) as Faster R-CNN does, in 2D and 3D.

Proposals: anchors with IoU >= 0.7 to a box are positive, < 0.3 negative, and each box's best anchors are positive
too; RPN_SAMPLES anchors per image, at most half positive, learn objectness (binary cross-entropy) and the
positives their offsets (smooth L1). Box head: the image's proposals plus its boxes, IoU >= 0.5 to a box are
foreground, the rest background; ROI_SAMPLES per image (fewer in 3D, where a volume holds a few objects and
sampling each region costs 8x more), at most a quarter foreground, learn their class
(cross-entropy over K + 1) and the foreground their offsets (smooth L1, plus 1 - GIoU or DIoU of the boxes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medattn.layers.boxes import aligned_iou, box_iou

RPN_SAMPLES, RPN_POSITIVE = 256, 0.5
ROI_SAMPLES, ROI_POSITIVE = {2: 256, 3: 128}, 0.25
RPN_HIGH, RPN_LOW, ROI_FOREGROUND = 0.7, 0.3, 0.5
SMOOTH_BETA = 1.0 / 9


def _sample(labels: torch.Tensor, total: int, positive_share: float, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive indices, negative indices) drawn from labels 1 / 0 (-1 ignored)."""
    positive = torch.nonzero(labels == 1).flatten()
    negative = torch.nonzero(labels == 0).flatten()
    n_positive = min(len(positive), int(total * positive_share))
    n_negative = min(len(negative), total - n_positive)
    pick_p = torch.randperm(len(positive), generator=generator)[:n_positive].to(labels.device)
    pick_n = torch.randperm(len(negative), generator=generator)[:n_negative].to(labels.device)
    return positive[pick_p], negative[pick_n]


def anchor_labels(anchors: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (A,) 1 / 0 / -1, matched box index (A,)) of the anchors against an image's boxes."""
    labels = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
    if len(boxes) == 0:
        return labels, torch.zeros_like(labels)
    overlap = box_iou(boxes, anchors)  # (G, A)
    best, matched = overlap.max(dim=0)
    labels[(best >= RPN_LOW) & (best < RPN_HIGH)] = -1
    labels[best >= RPN_HIGH] = 1
    # each box's best anchors (ties included) are positive, matched to that box
    top = overlap.amax(dim=1, keepdim=True)
    box_index, anchor_index = torch.nonzero((overlap == top) & (top > 0), as_tuple=True)
    labels[anchor_index], matched[anchor_index] = 1, box_index
    return labels, matched


def two_stage_loss(model, output, targets, *, device, box_kind: str) -> torch.Tensor:
    from medattn.models.faster_rcnn import ROI_WEIGHTS, encode

    generator = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,))))  # the run's seeded stream
    anchors = model.anchors(targets.shape, device=output.device)
    proposals = model.proposals(output, targets.shape)
    rpn_total, regions, region_labels, region_boxes = output.new_zeros(()), [], [], []
    for b in range(len(output)):
        boxes, labels = targets.boxes[b].to(device), targets.labels[b].to(device)
        anchor_label, matched = anchor_labels(anchors, boxes)
        positive, negative = _sample(anchor_label, RPN_SAMPLES, RPN_POSITIVE, generator)
        chosen = torch.cat([positive, negative])
        objectness = output[b, chosen, 0].float()
        wanted = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).to(objectness.device)
        rpn_total = rpn_total + F.binary_cross_entropy_with_logits(objectness, wanted)
        if len(positive):
            goal = encode(boxes[matched[positive]], anchors[positive])
            rpn_total = rpn_total + F.smooth_l1_loss(
                output[b, positive, 1:].float(), goal, beta=SMOOTH_BETA, reduction="sum"
            ) / max(len(chosen), 1)
        # stage two: the proposals and the image's own boxes, sampled
        candidates = torch.cat([proposals[b], boxes])
        if len(boxes):
            overlap, owner = box_iou(boxes, candidates).max(dim=0)
        else:
            overlap = torch.zeros(len(candidates), device=device)
            owner = torch.zeros(len(candidates), dtype=torch.long, device=device)
        foreground = (overlap >= ROI_FOREGROUND).long()
        positive, negative = _sample(foreground, ROI_SAMPLES[model.spatial_dims], ROI_POSITIVE, generator)
        picked = torch.cat([positive, negative])
        regions.append(candidates[picked])
        classes = torch.full((len(picked),), model.num_classes, dtype=torch.long, device=device)  # background
        if len(boxes):
            classes[: len(positive)] = labels[owner[positive]]
        region_labels.append(classes)
        region_boxes.append(boxes[owner[picked]] if len(boxes) else candidates[picked])
    logits, offsets = model.classify_regions(model.features, regions)
    classes, goals, rois = torch.cat(region_labels), torch.cat(region_boxes), torch.cat(regions)
    roi_total = F.cross_entropy(logits.float(), classes)
    foreground = classes < model.num_classes
    if bool(foreground.any()):
        target = encode(goals[foreground], rois[foreground], ROI_WEIGHTS)
        smooth = F.smooth_l1_loss(offsets[foreground].float(), target, beta=SMOOTH_BETA, reduction="sum")
        from medattn.models.faster_rcnn import decode

        predicted = decode(offsets[foreground], rois[foreground], ROI_WEIGHTS)
        overlap = (1 - aligned_iou(predicted, goals[foreground], kind=box_kind)).sum()
        roi_total = roi_total + (smooth + overlap) / len(classes)
    return rpn_total / len(output) + roi_total
