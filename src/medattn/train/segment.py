"""The segmentation training loop: random patches with foreground oversampling, Dice + cross-entropy.

AdamW with the shared one-cycle / cosine schedule (engine.build_schedule), gradient clipping, optional deep
supervision (auxiliary decoder outputs weighted 1/2, 1/4, ... as in nnU-Net), mixed precision on CUDA. After
every epoch each validation case is segmented whole by sliding-window inference with Gaussian blending, the
best epoch is the one with the highest mean foreground Dice, and the resume state is written atomically
(train/checkpoint.py), so `--resume` after a kill continues exactly. The run directory is DESIGN.md's:
config.yaml, model.safetensors, model.json (task "segmentation"), history.csv, checkpoint/.

Segmentation defaults where the config holds the classification ones: model attention_unet, loss dice_ce,
best epoch on Dice, batch 16 (2D) or 2 (3D) patches; epochs 0 means about AUTO_PATCHES patches in total.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from medattn.config import DEFAULT_MODEL, RunConfig, TrainConfig, save_config
from medattn.errors import ConfigError
from medattn.progress import bar
from medattn.runs import CHECKPOINT, atomic_save_safetensors, atomic_write_json
from medattn.train import checkpoint as ckpt
from medattn.train.segment_data import SegmentationData, load_segmentation_data

SEGMENTATION_MODEL = "attention_unet"
SEGMENTATION_BATCH = {2: 16, 3: 2}
AUTO_PATCHES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 4000, 10, 100
LOSSES = ("dice_ce", "focal", "tversky")
TVERSKY_ALPHA, TVERSKY_BETA = 0.3, 0.7  # false negatives cost more than false positives: tiny structures


def resolve_segmentation(config: RunConfig, data: SegmentationData, *, patches_per_epoch: int) -> RunConfig:
    """A copy with every automatic choice concrete (saved as config.yaml, so a resume is exact)."""
    import medattn.models  # noqa: F401  (registers the models)
    from medattn.data.presets import resolve_augment
    from medattn.registry import MODELS

    config = RunConfig.from_dict(config.to_dict())
    defaults = TrainConfig()
    config.data.task = "segmentation"
    config.data.patch, config.data.spacing = list(data.plan.patch), data.plan.spacing or "none"
    config.data.class_names = list(data.class_names)
    modality = config.data.modality if config.data.modality != "auto" else data.source.modality
    config.data.augment = resolve_augment(config.data.augment, spatial_dims=data.spatial_dims, modality=modality)
    if config.model.name == DEFAULT_MODEL:
        config.model.name, config.model.options = SEGMENTATION_MODEL, {}
    if "segmentation" not in MODELS.get(config.model.name).tasks:
        names = ", ".join(MODELS.names("segmentation"))
        raise ConfigError(f"model {config.model.name!r} does not segment; segmentation models: {names}")
    train = config.train
    if train.loss == defaults.loss:
        train.loss = "dice_ce"
    if train.loss not in LOSSES:
        raise ConfigError(f"train.loss {train.loss!r} is not a segmentation loss ({', '.join(LOSSES)})")
    if train.select_metric == defaults.select_metric:
        train.select_metric = "dice"
    if train.select_metric != "dice":
        raise ConfigError(f"train.select_metric {train.select_metric!r}: segmentation picks the best epoch on dice")
    if train.batch_size == defaults.batch_size:
        train.batch_size = SEGMENTATION_BATCH[data.spatial_dims]
    if train.mixup or train.cutmix:
        raise ConfigError("train.mixup and train.cutmix mix whole images: they are not for segmentation")
    if config.model.init:
        raise ConfigError("model.init (transfer from a classification run) is not supported for segmentation")
    train.ema = 0.0  # the segmentation loop keeps no weight average; say so in config.yaml
    if train.epochs == 0:
        train.epochs = min(AUTO_EPOCHS_MAX, max(AUTO_EPOCHS_MIN, math.ceil(AUTO_PATCHES / patches_per_epoch)))
    return config


def build_segmentation_loss(name: str, *, gamma: float = 2.0):
    """loss(logits (B, K, *S), labels (B, *S) int64) -> scalar; Dice over the foreground classes, batch-wise."""
    import monai.losses
    import torch.nn.functional as F

    common = {"to_onehot_y": True, "softmax": True, "include_background": False, "batch": True}
    if name == "dice_ce":
        loss = monai.losses.DiceCELoss(**common)
    elif name == "focal":
        loss = monai.losses.DiceFocalLoss(gamma=gamma, **common)
    elif name == "tversky":
        tversky = monai.losses.TverskyLoss(alpha=TVERSKY_ALPHA, beta=TVERSKY_BETA, **common)
        return lambda logits, y: tversky(logits, y[:, None]) + F.cross_entropy(logits, y)
    else:
        raise ConfigError(f"train.loss {name!r} is not one of {', '.join(LOSSES)}")
    return lambda logits, y: loss(logits, y[:, None])


def supervised_loss(loss_fn, model, logits, y):
    """The loss of the main output, plus the deep supervision outputs weighted 1/2, 1/4, ... (all normalised)."""
    aux = getattr(model, "aux_logits", None) or []
    weights = [1.0] + [0.5 ** (i + 1) for i in range(len(aux))]
    total = sum(w * loss_fn(out.float(), y) for w, out in zip(weights, [logits, *aux], strict=True))
    return total / sum(weights)


def validation_scores(model, data: SegmentationData, *, device, amp: bool) -> dict:
    """Mean Dice (foreground classes, then cases) and per class, and mean HD95 in mm, over validation cases."""
    from medattn.evaluate.segmentation import case_metrics
    from medattn.segment_inference import sliding_probs

    rows = []
    for x, y, spacing in zip(data.val_x, data.val_y, data.val_spacing, strict=True):
        pred = sliding_probs(model, x, patch=data.plan.patch, device=device, amp=amp).argmax(dim=0)
        rows.append(case_metrics(pred.numpy(), y.numpy(), num_classes=data.num_classes, spacing=spacing))
    classes = sorted(rows[0])
    dice = np.array([[row[c]["dice"] for c in classes] for row in rows])  # (cases, classes)
    hd95 = np.array([[row[c]["hd95_mm"] for c in classes] for row in rows])
    scores = {"dice": float(dice.mean()), "hd95_mm": float(np.nanmean(hd95)) if np.isfinite(hd95).any() else math.nan}
    scores.update({f"dice_{data.class_names[c]}": float(v) for c, v in zip(classes, dice.mean(axis=0), strict=True)})
    return scores


def fit_segmentation(config: RunConfig, run: Path, *, resume: bool = False) -> dict:
    """Train as `config` says, writing the run directory `run` (already prepared by runs.prepare_run_dir)."""
    import torch

    from medattn.data.segmentation_augment import PairedAugment
    from medattn.data.segmentation_patches import PatchSampler
    from medattn.registry import create_model
    from medattn.train import distributed
    from medattn.train.device import autocast, grad_scaler, select_device, use_threads
    from medattn.train.engine import build_schedule
    from medattn.train.step import end_epoch, optimizer_step

    if distributed.enabled():
        raise ConfigError("segmentation trains in one process: start it without torchrun")
    use_threads(config.train.threads)
    device = select_device(config.train.device)
    torch.manual_seed(config.train.seed)
    data = load_segmentation_data(config)
    order = torch.Generator().manual_seed(config.train.seed)
    sampler = PatchSampler(
        data.train_x,
        data.train_y,
        patch=data.plan.patch,
        num_classes=data.num_classes,
        foreground_fraction=config.train.foreground_fraction,
        generator=order,
    )
    config = resolve_segmentation(config, data, patches_per_epoch=len(sampler))
    train_cfg = config.train
    model = create_model(
        config.model.name,
        spatial_dims=data.spatial_dims,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        options=config.model.options,
    ).to(device)
    config.model.options = model.config["options"]
    loss_fn = build_segmentation_loss(train_cfg.loss, gamma=train_cfg.focal_gamma)
    batch = min(train_cfg.batch_size, len(sampler))
    steps = math.ceil(len(sampler) / batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    scheduler = build_schedule(
        optimizer, name=train_cfg.schedule, lr=train_cfg.lr, total_steps=steps * train_cfg.epochs
    )
    augment = PairedAugment(config.data.augment, spatial_dims=data.spatial_dims, seed=train_cfg.seed + 1)
    generators = {"order": order, **augment.generators}
    scaler = grad_scaler(device, train_cfg.amp)
    checkpointed = dict(model=model, optimizer=optimizer, scheduler=scheduler, ema=None, generators=generators)

    start, history, best = 0, [], {"score": -math.inf, "epoch": -1, "scores": {}}
    if resume:
        state = ckpt.load_checkpoint(run)
        ckpt.restore(state, model=model, optimizer=optimizer, scheduler=scheduler, ema=None, generators=generators)
        start, history, best = state["epoch"] + 1, state["history"], state["best"]
    else:
        save_config(config, run / "config.yaml")
    stale = sum(1 for row in history if row["epoch"] > best["epoch"])
    with bar() as progress:
        task = progress.add_task("training", total=steps * train_cfg.epochs, completed=steps * start, status="")
        for epoch in range(start, train_cfg.epochs):
            tick, total_loss, seen = time.perf_counter(), 0.0, 0
            model.train()
            cases = sampler.epoch()
            for first in range(0, len(cases), batch):
                x, y = augment(*sampler.batch(cases[first : first + batch]))
                with autocast(device, train_cfg.amp):
                    logits = model(x.to(device, non_blocking=True))
                loss = supervised_loss(loss_fn, model, logits.float(), y.to(device))
                optimizer_step(
                    loss,
                    model=model,
                    optimizer=optimizer,
                    scaler=scaler,
                    scheduler=scheduler,
                    grad_clip=train_cfg.grad_clip,
                    epoch=epoch,
                )
                total_loss, seen = total_loss + loss.item() * len(x), seen + len(x)
                progress.update(
                    task, advance=1, status=f"epoch {epoch + 1}/{train_cfg.epochs} loss {total_loss / seen:.4f}"
                )
            seconds = time.perf_counter() - tick
            scores = validation_scores(model, data, device=device, amp=train_cfg.amp)
            history.append(
                {
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": total_loss / max(seen, 1),
                    **{f"val_{k}": v for k, v in scores.items()},
                    "seconds": seconds,
                    "patches_per_second": seen / max(seconds, 1e-9),
                }
            )
            best, improved = end_epoch(
                run,
                epoch=epoch,
                score=scores["dice"],
                scores=scores,
                best=best,
                evaluated=model,
                history=history,
                columns=list(history[0]),
                state=checkpointed,
            )
            stale = 0 if improved else stale + 1
            progress.update(
                task,
                status=f"epoch {epoch + 1} val dice {scores['dice']:.3f} "
                f"(best {best['score']:.3f} @ {best['epoch'] + 1})",
            )
            if train_cfg.patience and stale >= train_cfg.patience:
                break
    return _finish(config, run, data, model=model, best=best, history=history, device=device)


def _finish(config: RunConfig, run: Path, data: SegmentationData, *, model, best: dict, history: list, device) -> dict:
    from safetensors.torch import load_file

    from medattn.train.segment_card import segmentation_card

    weights = load_file(run / "checkpoint" / "best.safetensors")
    model.load_state_dict(weights)
    card = segmentation_card(config, data, model=model, best=best, history=history, device=device)
    atomic_save_safetensors(run / "model.safetensors", weights, metadata={"medattn_model": config.model.name})
    atomic_write_json(run / "model.json", card)
    return {
        "run": str(run),
        "task": "segmentation",
        "best_epoch": best["epoch"] + 1,
        "val": best["scores"],
        "epochs_run": len(history),
        "train_patches_per_second": card["training"]["patches_per_second"],
        "checkpoint": str(run / CHECKPOINT),
    }
