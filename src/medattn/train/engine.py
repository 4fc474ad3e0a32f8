"""The training loop: AdamW, one-cycle or cosine schedule, clipping, optional EMA and mixed precision,
best epoch chosen on validation, atomic checkpoints after every epoch, resumable after a kill.
Under torchrun the same loop runs in every process on its share of each batch (train/distributed.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from medattn.config import RunConfig, save_config
from medattn.data.augment import Augment
from medattn.data.sources import LabelledSource
from medattn.inference import predict_probs
from medattn.progress import console
from medattn.registry import create_model
from medattn.runs import CHECKPOINT, atomic_save_safetensors, atomic_write_json
from medattn.train import checkpoint as ckpt
from medattn.train import distributed
from medattn.train.card import model_card
from medattn.train.data import TrainingData, load_training_data
from medattn.train.device import autocast, grad_scaler, use_threads
from medattn.train.losses import build_loss
from medattn.train.mixing import Mixer
from medattn.train.step import end_epoch, optimizer_step
from medattn.train.transfer import load_backbone

HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "val_loss",
    "val_auc",
    "val_acc",
    "val_balanced_acc",
    "seconds",
    "images_per_second",
)


def build_schedule(optimizer, *, name: str, lr: float, total_steps: int):
    import torch

    if name == "onecycle" and total_steps >= 4:  # a rise of at least 2 steps: shorter runs fall through to cosine
        rise = max(0.2, 2.5 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=rise)
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def validation_scores(model, data: TrainingData, loss_fn, *, device, amp: bool) -> dict:
    import torch

    from medattn.evaluate.metrics import classification_metrics

    probs = predict_probs(model, data.val.x, task=data.source.task, device=device, amp=amp)
    scores = classification_metrics(data.val.y.numpy(), probs, task=data.source.task, ci=False)
    with torch.no_grad():  # loss from probabilities: the same value the loss gives on logits for CE
        p = torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7)
        logits = p.log() if data.source.task != "multilabel" else (p / (1 - p)).log()
        scores["loss"] = float(loss_fn(logits.float(), data.val.y))
    return scores


def epoch_order(data: TrainingData, sampler: str, generator):
    """Indices of one epoch: a shuffle, or draws that give every class the same expected share."""
    import torch

    n = len(data.train.y)
    if sampler == "shuffle":
        return torch.randperm(n, generator=generator)
    labels = data.train.y if data.train.y.ndim == 1 else data.train.y.argmax(dim=1)
    counts = torch.bincount(labels, minlength=data.num_outputs).float()
    weights = 1.0 / counts[labels]  # (N,) each class sums to 1
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def _ema_with_warmup(decay: float):
    """EMA whose decay grows with the step, (1 + n) / (10 + n) capped at `decay`: with a fixed 0.99 a short run
    (a hundred steps) would still carry a third of its random initial weights."""

    def average(averaged, current, steps):
        rate = min(decay, (1.0 + float(steps)) / (10.0 + float(steps)))
        return averaged + (current - averaged) * (1.0 - rate)

    return average


def _score(scores: dict, metric: str) -> float:
    if metric == "loss" or not math.isfinite(scores.get(metric, float("nan"))):
        return -scores["loss"]
    return scores[metric]


def fit(
    config: RunConfig, run: Path, *, resume: bool = False, quiet: bool = False, source: LabelledSource | None = None
) -> dict:
    """Train as `config` says, writing the run directory `run` (already prepared by runs.prepare_run_dir).

    `source`, when given, is used as already split instead of opening config.data.path (cross-validation folds).
    """
    import torch

    train_cfg = config.train
    use_threads(train_cfg.threads)
    device = distributed.start(train_cfg.device)  # joins the process group under torchrun
    torch.manual_seed(train_cfg.seed)
    data = load_training_data(config, source=source)
    config = config.resolved(spatial_dims=data.spatial_dims, n_train=len(data.train.y), modality=data.source.modality)
    train_cfg = config.train
    model = create_model(
        config.model.name,
        spatial_dims=data.spatial_dims,
        in_channels=data.in_channels,
        num_classes=data.num_outputs,
        options=config.model.options,
    ).to(device)
    if config.model.init:
        copied = load_backbone(
            model,
            config.model.init,
            name=config.model.name,
            options=config.model.options,
            spatial_dims=data.spatial_dims,
        )
        data.notes.append(f"initialised {copied} tensors (all but the head) from {config.model.init}")
    net = distributed.wrap(model, device)  # what the step calls: DDP under torchrun; save and evaluate `model`
    counts = data.source.class_counts("train")
    loss_fn = build_loss(
        task=data.source.task,
        loss=train_cfg.loss,
        counts=counts,
        n=len(data.train.y),
        gamma=train_cfg.focal_gamma,
        smoothing=train_cfg.label_smoothing,
    )
    n, batch = len(data.train.y), min(train_cfg.batch_size, len(data.train.y))
    steps = len(distributed.rank_batches(torch.arange(n), batch=batch))  # per process, the same in each
    if note := distributed.batch_note(batch):
        data.notes.append(note)
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():  # no weight decay on norms, biases, embeddings
        (no_decay if parameter.ndim <= 1 or "pos_embed" in name or "token" in name else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": train_cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=train_cfg.lr,
    )
    scheduler = build_schedule(
        optimizer, name=train_cfg.schedule, lr=train_cfg.lr, total_steps=steps * train_cfg.epochs
    )
    ema = None
    if train_cfg.ema > 0:
        ema = torch.optim.swa_utils.AveragedModel(model, avg_fn=_ema_with_warmup(train_cfg.ema), use_buffers=True)
    order = torch.Generator().manual_seed(train_cfg.seed)
    augment = Augment(config.data.augment, spatial_dims=data.spatial_dims, seed=train_cfg.seed + 1)
    mixer = Mixer(
        mixup=train_cfg.mixup, cutmix=train_cfg.cutmix, generator=torch.Generator().manual_seed(train_cfg.seed + 2)
    )
    generators = {"order": order, "augment": augment.generator, "mixing": mixer.generator}
    scaler = grad_scaler(device, train_cfg.amp)
    checkpointed = dict(model=model, optimizer=optimizer, scheduler=scheduler, ema=ema, generators=generators)

    start, history, best = 0, [], {"score": -math.inf, "epoch": -1, "scores": {}}
    if resume:
        state = ckpt.load_checkpoint(run)
        ckpt.restore(state, model=model, optimizer=optimizer, scheduler=scheduler, ema=ema, generators=generators)
        start, history, best = state["epoch"] + 1, state["history"], state["best"]
    elif distributed.is_main():
        save_config(config, run / "config.yaml")

    evaluated = ema.module if ema is not None else model
    stale = sum(1 for row in history if row["epoch"] > best["epoch"])
    started = time.perf_counter()
    with distributed.main_bar() as progress:
        task = progress.add_task("training", total=steps * train_cfg.epochs, completed=steps * start, status="")
        for epoch in range(start, train_cfg.epochs):
            tick = time.perf_counter()
            model.train()
            permutation = epoch_order(data, train_cfg.sampler, order)  # the same on every rank
            distributed.reseed_rank_streams(
                seed=train_cfg.seed, epoch=epoch, generators=[augment.generator, mixer.generator]
            )
            total_loss, seen = 0.0, 0
            for index in distributed.rank_batches(permutation, batch=batch):
                x = augment(data.train.x[index])
                y = data.train.y[index].to(device)
                partner, lam = None, 1.0
                if mixer.active:
                    x, partner, lam = mixer(x)
                with autocast(device, train_cfg.amp):
                    logits = net(x.to(device, non_blocking=True))
                loss = (
                    loss_fn(logits.float(), y)
                    if partner is None
                    else mixer.loss(loss_fn, logits.float(), y, partner, lam)
                )
                optimizer_step(
                    loss,
                    model=model,
                    optimizer=optimizer,
                    scaler=scaler,
                    scheduler=scheduler,
                    grad_clip=train_cfg.grad_clip,
                    epoch=epoch,
                )
                if ema is not None:
                    ema.update_parameters(model)
                total_loss += loss.item() * len(index)
                seen += len(index)
                progress.update(
                    task,
                    advance=1,
                    status=f"epoch {epoch + 1}/{train_cfg.epochs} loss {total_loss / seen:.4f}",
                )
            seconds = time.perf_counter() - tick
            total_loss, seen = distributed.all_reduce([total_loss, seen])  # over every rank's share of the epoch
            [seconds] = distributed.all_reduce([seconds], op="max")
            stop = False
            if distributed.is_main():  # rank 0 validates and writes; the others wait for its verdict below
                scores = validation_scores(evaluated, data, loss_fn, device=device, amp=train_cfg.amp)
                row = {
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": total_loss / max(seen, 1),
                    "val_loss": scores["loss"],
                    "val_auc": scores["auc"],
                    "val_acc": scores["acc"],
                    "val_balanced_acc": scores["balanced_acc"],
                    "seconds": seconds,
                    "images_per_second": seen / max(seconds, 1e-9),
                }
                history.append(row)
                best, improved = end_epoch(
                    run,
                    epoch=epoch,
                    score=_score(scores, train_cfg.select_metric),
                    scores=_plain(scores),
                    best=best,
                    evaluated=evaluated,
                    history=history,
                    columns=HISTORY_COLUMNS,
                    state=checkpointed,
                )
                stale = 0 if improved else stale + 1
                progress.update(
                    task,
                    status=f"epoch {epoch + 1} val auc {scores['auc']:.3f} acc {scores['acc']:.3f} "
                    f"(best {best['scores'].get('auc', float('nan')):.3f} @ {best['epoch'] + 1})",
                )
                stop = bool(train_cfg.patience) and stale >= train_cfg.patience
                if stop:
                    console().print(f"early stop after epoch {epoch + 1}: no gain for {stale} epochs")
            if distributed.broadcast(stop):
                break
    return distributed.on_main(
        lambda: _finish(
            config,
            run,
            data,
            model=evaluated,
            best=best,
            history=history,
            device=device,
            seconds=time.perf_counter() - started,
        )
    )


def decision_threshold(config, data: TrainingData, model, *, device) -> tuple[float | None, str]:
    """The binary decision threshold: fixed, or tuned on the validation split (never on test)."""
    from medattn.config import parse_threshold
    from medattn.evaluate.metrics import threshold_for_sensitivity, youden_threshold

    task = data.source.task
    kind, value = parse_threshold(config.train.threshold)
    if task == "multilabel":
        return 0.5, "fixed 0.5 per label"
    if task != "binary":
        return None, "argmax"
    if kind == "fixed":
        return value, f"fixed {value}"
    scores = predict_probs(model, data.val.x, task=task, device=device)[:, 1]
    labels = data.val.y.numpy()
    if kind == "youden":
        return float(youden_threshold(labels, scores)), "Youden's J on validation"
    return float(threshold_for_sensitivity(labels, scores, value)), f"sensitivity >= {value} on validation"


def _plain(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if isinstance(v, int | float | str)}


def _finish(config, run: Path, data: TrainingData, *, model, best: dict, history: list, device, seconds) -> dict:
    from safetensors.torch import load_file

    weights = load_file(run / "checkpoint" / "best.safetensors")
    model.load_state_dict(weights)
    card = model_card(config, data, model=model, best=best, history=history, device=device)
    card["threshold"], card["threshold_rule"] = decision_threshold(config, data, model, device=device)
    atomic_save_safetensors(run / "model.safetensors", weights, metadata={"medattn_model": config.model.name})
    atomic_write_json(run / "model.json", card)
    return {
        "run": str(run),
        "best_epoch": best["epoch"] + 1,
        "val": best["scores"],
        "epochs_run": len(history),
        "train_images_per_second": card["training"]["images_per_second"],
        "checkpoint": str(run / CHECKPOINT),
    }
