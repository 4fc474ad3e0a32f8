"""Detection losses, named `<classification>_<box>` in `train.loss`: varifocal or focal, with GIoU or DIoU.

One-stage models (kind "points"): cells are assigned their boxes (assign.py); the classification loss is
varifocal (Zhang et al. 2021: binary cross-entropy towards the IoU-aware targets, positives weighted by their
target, negatives by ALPHA x p^GAMMA) or focal (Lin et al. 2017, hard 0/1 targets); the box loss is 1 - GIoU (or
1 - DIoU) of each positive's predicted box, weighted by its target. Both are summed and divided by the sum of the
targets, and the box loss weighs BOX_WEIGHT. Two-stage models (kind "two_stage") train their proposals and their
box head as Faster R-CNN does (rcnn_loss.py), with the box loss's IoU kind for the second stage's boxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medattn.errors import ConfigError
from medattn.layers.boxes import aligned_iou

LOSSES = ("varifocal_giou", "varifocal_diou", "focal_giou", "focal_diou")
BOX_WEIGHT = 2.0
ALPHA, GAMMA = 0.75, 2.0  # varifocal's negatives
FOCAL_ALPHA = 0.25


def split_loss_name(name: str) -> tuple[str, str]:
    if name not in LOSSES:
        raise ConfigError(f"train.loss {name!r} is not a detection loss ({', '.join(LOSSES)})")
    classification, box = name.split("_")
    return classification, box


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Summed over every cell and class; `targets` (P, K) soft in [0, 1]."""
    logits = logits.float()
    probability = logits.sigmoid()
    if kind == "varifocal":
        weight = torch.where(targets > 0, targets, ALPHA * probability.detach().pow(GAMMA))
        return (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight).sum()
    hard = (targets > 0).float()
    cross = F.binary_cross_entropy_with_logits(logits, hard, reduction="none")
    p_true = probability * hard + (1 - probability) * (1 - hard)
    alpha = FOCAL_ALPHA * hard + (1 - FOCAL_ALPHA) * (1 - hard)
    return (alpha * (1 - p_true).pow(GAMMA) * cross).sum()


class DetectionLoss:
    """The engine's loss(model, output, targets, device) for every detector kind."""

    def __init__(self, name: str) -> None:
        self.classification, self.box = split_loss_name(name)

    def __call__(self, model, output, targets, device) -> torch.Tensor:
        if model.kind == "two_stage":
            from medattn.tasks.detect.rcnn_loss import two_stage_loss

            return two_stage_loss(model, output, targets, device=device, box_kind=self.box)
        return self.points(model, output, targets, device)

    def points(self, model, output, targets, device) -> torch.Tensor:
        from medattn.models.detector import level_points
        from medattn.tasks.detect.assign import assign

        k = model.num_classes
        scores, predicted = model.decode(output, targets.shape)  # (B, P, K), (B, P, 2D)
        centres, strides = level_points(targets.shape, model.strides, device=output.device)
        cls_total, box_total, norm = output.new_zeros(()), output.new_zeros(()), 0.0
        for b in range(len(output)):
            found = assign(
                scores[b].detach(),
                predicted[b].detach(),
                centres,
                strides,
                targets.boxes[b].to(device),
                targets.labels[b].to(device),
            )
            cls_total = cls_total + classification_loss(output[b, :, :k], found.scores, self.classification)
            if self.classification == "focal":
                norm += float(found.positive.sum())
            else:
                norm += float(found.scores.sum())
            if bool(found.positive.any()):
                weight = found.scores[found.positive].sum(dim=1)
                iou = aligned_iou(predicted[b][found.positive], found.boxes[found.positive], kind=self.box)
                box_total = box_total + ((1 - iou) * weight).sum()
        norm = max(norm, 1.0)
        return (cls_total + BOX_WEIGHT * box_total) / norm
