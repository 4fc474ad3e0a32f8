"""Knowledge distillation (`train.teacher`, `medattn train --teacher RUN`): a student learns the task's labels and
a finished run's softened outputs (Hinton et al. 2015):

    loss = (1 - alpha) * task loss + alpha * T^2 * KL(teacher(x) / T || student(x) / T)

over the class axis of each output: per image for a classifier, per pixel or voxel for a dense network. The task
says how its outputs become probabilities (`Task.distillation`: softmax over the classes, or a sigmoid per label).

The teacher sees exactly the batch the student sees (augmented and mixed): a forward hook on the student records
the teacher's outputs in training mode, and the loss takes them. Validation and the best epoch use the task's own
loss and scores, so a distilled run is chosen, checkpointed, resumed and averaged (EMA) like any other.
"""

from __future__ import annotations

import inspect

from medattn.errors import ConfigError


class DistillationLoss:
    """The engine's loss(model, output, target, device), with the teacher's term added in training steps."""

    def __init__(self, inner, *, teacher, kind: str, temperature: float, alpha: float) -> None:
        self.inner = inner
        self.base = inner.base  # what validation reports: the task's own loss
        self.teacher, self.kind = teacher, kind
        self.temperature, self.alpha = temperature, alpha
        self.teacher_output = None
        # a teacher trained on the images alone gets the images alone of a batch that also carries clinical values
        self.takes = len(inspect.signature(teacher.forward).parameters)

    def attach(self, student) -> None:
        student.register_forward_hook(self._record)

    def _record(self, module, inputs, output) -> None:
        import torch

        if module.training:
            with torch.no_grad():
                self.teacher_output = self.teacher(*inputs[: self.takes])

    def __call__(self, model, output, target, device):
        loss = self.inner(model, output, target, device)
        teacher, self.teacher_output = self.teacher_output, None
        if teacher is None:  # not a training step
            return loss
        kl = soft_kl(output.float(), teacher.float(), kind=self.kind, temperature=self.temperature)
        return (1.0 - self.alpha) * loss + self.alpha * kl


def soft_kl(student, teacher, *, kind: str, temperature: float):
    """T^2 * KL(teacher || student) of outputs (B, K) or (B, K, *S) softened by T, averaged over images and pixels."""
    import torch.nn.functional as F

    s, t = student / temperature, teacher / temperature
    if kind == "softmax":
        terms = F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), log_target=True, reduction="none")
        per_item = terms.sum(dim=1)  # (B, *S): KL over the classes
    else:  # a Bernoulli per output
        p = t.sigmoid()
        per_item = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return per_item.mean() * temperature**2


def check_distillation(config) -> None:
    """The distillation settings are usable: a temperature above 0, a weight in (0, 1], and a teacher to use them."""
    train = config.train
    if train.teacher is None:
        if (train.distill_temperature, train.distill_alpha) != (4.0, 0.5):
            raise ConfigError("train.distill_temperature and train.distill_alpha mean nothing without train.teacher")
        return
    if not train.distill_temperature > 0:
        raise ConfigError(f"train.distill_temperature must be above 0, got {train.distill_temperature}")
    if not 0.0 < train.distill_alpha <= 1.0:
        share = train.distill_alpha
        raise ConfigError(f"train.distill_alpha (the teacher's share of the loss) must be in (0, 1], got {share}")


def distilling(task, config, data, *, student, loss_fn, device) -> DistillationLoss:
    """The task's loss with the teacher `config.train.teacher` added; its network fits the student's data."""
    from medattn.engine.loaded import load_run

    kind = task.distillation(data)
    if kind is None:
        raise ConfigError(f"--teacher: {task.name} has no probabilities to distil; train this task without a teacher")
    teacher = load_run(config.train.teacher, device=device)
    spec = teacher.card["model"]
    found = (teacher.task, spec["spatial_dims"], spec["in_channels"], spec["num_classes"])
    wanted = (task.name, data.spatial_dims, data.in_channels, data.num_outputs)
    if found != wanted:
        raise ConfigError(
            f"--teacher {config.train.teacher}: its model is ({', '.join(map(str, found))}) as (task, spatial dims, "
            f"input channels, outputs), but this run trains ({', '.join(map(str, wanted))})"
        )
    for parameter in teacher.model.parameters():
        parameter.requires_grad_(False)
    loss = DistillationLoss(
        loss_fn,
        teacher=teacher.model,
        kind=kind,
        temperature=config.train.distill_temperature,
        alpha=config.train.distill_alpha,
    )
    loss.attach(student)
    return loss
