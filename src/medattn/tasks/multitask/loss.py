"""The multi-task loss: each head's own task loss, masked to the images that carry its label, then combined.

- segmentation: Dice + cross-entropy (tasks/segment/task.py's, `--loss` picks its other losses);
- classification: cross-entropy over the head's classes; regression: MSE on standardised values;
- combined with fixed weights (`--head-weights 1,0.5`), or by learned homoscedastic uncertainty (Kendall, Gal and
  Cipolla 2018): total = sum_i exp(-s_i) L_i + s_i with s_i = log sigma_i^2 one learned scalar per head (the
  model's `log_variances`). A head whose loss is large or noisy gets a larger sigma and a smaller weight, without
  a search over weights; the `+ s_i` term keeps sigma from growing without bound. (The paper's 1/2 on regression
  terms is folded into s_i.) A batch in which no image carries a head's label adds nothing for that head.
"""

from __future__ import annotations

from medattn.tasks.multitask.heads import CLASSIFICATION, SEGMENTATION


def uncertainty_of(model):
    """The learned log-variances (H,) of the multi-task network inside `model` (it may be wrapped by a fusion)."""
    from medattn.models.multitask import MultiTaskUNet

    inner = next(m for m in model.modules() if isinstance(m, MultiTaskUNet))
    return inner.log_variances


class MultiTaskLoss:
    """loss(model, outputs {head: tensor}, target {"mask", head: labels}, device) -> scalar."""

    def __init__(self, heads, *, segmentation_loss, weights: list[float] | None) -> None:
        self.heads, self.segmentation_loss, self.weights = heads, segmentation_loss, weights
        self.last: dict[str, float] = {}  # each head's loss in the last call, for validation's report

    def head_losses(self, outputs: dict, target: dict, device) -> list:
        import torch
        import torch.nn.functional as F

        losses = []
        for head in self.heads:
            out = outputs[head.name].float()
            if head.kind == SEGMENTATION:
                losses.append(self.segmentation_loss(out, target["mask"].to(device)))
                continue
            labels = target[head.name].to(device)
            known = labels >= 0 if head.kind == CLASSIFICATION else torch.isfinite(labels)
            if not bool(known.any()):
                losses.append(out.sum() * 0.0)  # keeps the graph (and DDP) whole; contributes nothing
            elif head.kind == CLASSIFICATION:
                losses.append(F.cross_entropy(out[known], labels[known]))
            else:
                losses.append(F.mse_loss(out[known, 0], labels[known].float()))
        return losses

    def combine(self, model, losses: list):
        import torch

        if self.weights is not None:
            return sum(w * loss for w, loss in zip(self.weights, losses, strict=True))
        log_variances = uncertainty_of(model)
        stacked = torch.stack(losses)  # (H,)
        return (torch.exp(-log_variances) * stacked + log_variances).sum()

    def __call__(self, model, outputs, target, device):
        losses = self.head_losses(outputs, target, device)
        self.last = {head.name: float(loss.detach()) for head, loss in zip(self.heads, losses, strict=True)}
        return self.combine(model, losses)
