"""The one training loop, for every task: AdamW, one-cycle or cosine schedule, clipping, optional EMA and mixed
precision, `--init` transfer, the best epoch chosen on validation, early stopping, atomic checkpoints after every
epoch (resumable after a kill), and DDP under torchrun (engine/distributed.py).

The task (tasks/<task>/) gives the data, its training batches, the loss, the validation scores and its part of
the model card; this loop knows nothing else about it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from medattn.config import RunConfig, save_config
from medattn.engine import checkpoint as ckpt
from medattn.engine import distributed
from medattn.engine.budget import PROBE_STEPS, TimeBudget, replanned_schedule
from medattn.engine.device import autocast, grad_scaler, model_inputs, use_threads
from medattn.engine.optim import build_optimizer, build_schedule, ema_model
from medattn.engine.step import end_epoch, optimizer_step, write_history
from medattn.engine.transfer import load_backbone
from medattn.progress import console
from medattn.registry import create_model
from medattn.runs import CHECKPOINT, atomic_save_safetensors, atomic_write_json, run_file


def fit(config: RunConfig, run: Path, *, resume: bool = False, quiet: bool = False, source=None, weights=None) -> dict:
    """Train as `config` says, writing the run directory `run` (already prepared by runs.prepare_run_dir).

    `source`, when given, is the task's source already split (a cross-validation fold) instead of data.path.
    `weights`, when given, is a state dict the model starts from, head included (`medattn compress` fine-tuning a
    pruned network); `train.teacher` adds a teacher's softened outputs to the loss (engine/distill.py).
    """
    import torch

    from medattn.data.readers import reading_series
    from medattn.tasks import task_for_config
    from medattn.tasks.base import resolve_modalities

    task = task_for_config(config)
    user_batch = config.train.batch_size is not None  # never replaced; refused if it does not fit
    use_threads(config.train.threads)
    device = distributed.start(config.train.device)  # joins the process group under torchrun
    torch.manual_seed(config.train.seed)
    with reading_series(config.data.series):  # folders of several DICOM series: the one the config names
        data = task.load(config, source=source)
        data.run = run
        resolve_modalities(config, data)  # --modalities auto, and the default modality dropout
        train_set = task.train_set(config, data)
        config = task.resolve(config, data, train_set)
    train_set.configure(config)
    train_cfg = config.train
    model = create_model(
        config.model.name,
        spatial_dims=data.spatial_dims,
        in_channels=data.in_channels,
        num_classes=data.num_outputs,
        options=config.model.options,
    ).to(device)
    config.model.options = model.config["options"]
    if config.model.init:
        copied = load_backbone(
            model,
            config.model.init,
            name=config.model.name,
            options=config.model.options,
            spatial_dims=data.spatial_dims,
        )
        data.notes.append(f"initialised {copied} tensors (all but the head) from {config.model.init}")
    if weights is not None:
        model.load_state_dict(weights)
    net = distributed.wrap(model, device)  # what the step calls: DDP under torchrun; save and evaluate `model`
    loss_fn = task.loss(config, data)
    if config.train.teacher:
        from medattn.engine.distill import distilling

        loss_fn = distilling(task, config, data, student=model, loss_fn=loss_fn, device=device)
    ema = ema_model(model, train_cfg.ema)  # copied before any forward: a model may keep tensors of its last one
    batch = min(train_cfg.batch_size, len(train_set))
    if device.type == "cpu":  # memory known before work starts: a smaller automatic batch, or a refusal
        batch = _batch_that_fits(model, train_set, data, config, batch, user_batch, device, quiet)
    steps = len(distributed.rank_batches(torch.arange(len(train_set)), batch=batch))  # per process, the same in each
    if note := distributed.batch_note(batch):
        data.notes.append(note)
    optimizer = build_optimizer(model, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    scheduler = build_schedule(
        optimizer, name=train_cfg.schedule, lr=train_cfg.lr, total_steps=steps * train_cfg.epochs
    )
    order = torch.Generator().manual_seed(train_cfg.seed)
    generators = {"order": order, **train_set.generators}
    scaler = grad_scaler(device, train_cfg.amp)
    # A loss with a state of its own (a GAN's discriminator and its optimizer, trained inside the loss call) is
    # saved and restored with the run, so a resumed run continues exactly.
    stateful = loss_fn if hasattr(loss_fn, "state_dict") and hasattr(loss_fn, "load_state_dict") else None
    checkpointed = dict(
        model=model, optimizer=optimizer, scheduler=scheduler, ema=ema, generators=generators, loss=stateful
    )

    start, history, best = 0, [], {"score": -math.inf, "epoch": -1, "scores": {}}
    if resume:
        state = ckpt.load_checkpoint(run)
        ckpt.restore(run, state, **checkpointed)
        start, history, best = state["epoch"] + 1, state["history"], state["best"]
        if history and distributed.is_main():  # a kill between the checkpoint and history.csv must lose no row
            write_history(run, history, list(history[0]))
    elif distributed.is_main():
        save_config(config, run / "config.yaml")

    evaluated = ema.module if ema is not None else model
    stale = sum(1 for row in history if row["epoch"] > best["epoch"])
    budget = None
    if train_cfg.time_limit:
        budget = TimeBudget(train_cfg.time_limit, spent_before=sum(float(row["seconds"]) for row in history))
    rate_column = f"{task.item}_per_second"
    cut, first_step = None, 0.0  # the steps of a first epoch cut to fit the time budget; the clock after its first
    with distributed.main_bar() as progress:
        bar = progress.add_task("training", total=steps * train_cfg.epochs, completed=steps * start, status="")
        for epoch in range(start, train_cfg.epochs):
            tick = time.perf_counter()
            model.train()
            permutation = train_set.order(order)  # the same on every rank
            distributed.reseed_rank_streams(seed=train_cfg.seed, epoch=epoch, generators=train_set.rank_generators)
            total_loss, seen = 0.0, 0
            for step, items in enumerate(distributed.rank_batches(permutation, batch=batch)):
                x, target = train_set.batch(items)
                with autocast(device, train_cfg.amp):
                    output = net(*model_inputs(x, device))
                loss = loss_fn(model, output, target, device)
                optimizer_step(
                    loss,
                    model=model,
                    optimizer=optimizer,
                    scaler=scaler,
                    scheduler=scheduler,
                    grad_clip=train_cfg.grad_clip,
                    epoch=epoch,
                    step=step,
                    run=run,
                )
                if ema is not None:
                    ema.update_parameters(model)
                total_loss += loss.item() * len(items)
                seen += len(items)
                progress.update(
                    bar, advance=1, status=f"epoch {epoch + 1}/{train_cfg.epochs} loss {total_loss / seen:.4f}"
                )
                if budget is not None and epoch == start == 0 and cut is None and step < PROBE_STEPS:
                    first_step = budget.elapsed() if step == 0 else first_step
                    # decided after PROBE_STEPS, or sooner when a slow model's probe already eats the budget; every
                    # rank decides alike, on rank 0's clock
                    if distributed.broadcast(step + 1 == min(PROBE_STEPS, steps) or budget.probing_too_long()):
                        cut = distributed.broadcast(budget.steps_that_fit(steps, step + 1, first=first_step))
                    if cut is not None and cut < steps:  # one epoch alone would overrun the budget
                        scheduler = _cut_epoch(
                            config, run, data, optimizer, steps=steps, cut=cut, done=step + 1, quiet=quiet
                        )
                        checkpointed["scheduler"] = scheduler
                        progress.update(bar, total=cut)
                if cut is not None and step + 1 >= cut:
                    break
            seconds = time.perf_counter() - tick
            total_loss, seen = distributed.all_reduce([total_loss, seen])  # over every rank's share of the epoch
            [seconds] = distributed.all_reduce([seconds], op="max")
            stop = False
            if distributed.is_main():  # rank 0 validates and writes; the others wait for its verdict below
                data.epoch = epoch
                scores = task.validate(evaluated, data, loss_fn=loss_fn, device=device, amp=train_cfg.amp)
            if budget is not None and epoch == start == 0:  # re-planned before the first checkpoint holds the plan
                first = distributed.broadcast(budget.elapsed())
                epochs = budget.epochs_that_fit(train_cfg.epochs, first)
                if epochs < train_cfg.epochs:
                    scheduler = _replan(
                        config, run, data, optimizer, steps=steps, epochs=epochs, first=first, quiet=quiet
                    )
                    checkpointed["scheduler"] = scheduler
                    progress.update(bar, total=steps * epochs)
            if distributed.is_main():
                history.append(
                    {
                        "epoch": epoch,
                        "lr": optimizer.param_groups[0]["lr"],
                        "train_loss": total_loss / max(seen, 1),
                        **{f"val_{k}": v for k, v in task.history_scores(scores).items()},
                        "seconds": seconds,
                        rate_column: seen / max(seconds, 1e-9),
                    }
                )
                best, improved = end_epoch(
                    run,
                    epoch=epoch,
                    score=task.selection_score(scores, train_cfg.select_metric),
                    scores={k: v for k, v in scores.items() if isinstance(v, int | float | str)},
                    best=best,
                    evaluated=evaluated,
                    history=history,
                    columns=list(history[0]),
                    state=checkpointed,
                )
                stale = 0 if improved else stale + 1
                progress.update(
                    bar, status=f"epoch {epoch + 1} {task.progress_text(scores, best)}, best epoch {best['epoch'] + 1}"
                )
                if train_cfg.patience and stale >= train_cfg.patience:
                    stop, message = (
                        True,
                        (
                            f"early stop after epoch {epoch + 1} of {train_cfg.epochs}: no gain in "
                            f"{train_cfg.select_metric} for {stale} epochs (train.patience {train_cfg.patience})"
                        ),
                    )
                elif budget and epoch + 1 < train_cfg.epochs and budget.one_more_overruns(epoch + 1 - start):
                    stop, message = (
                        True,
                        (
                            f"stopped after epoch {epoch + 1} of {train_cfg.epochs}: one more would pass "
                            f"train.time_limit ({train_cfg.time_limit:g} min; epochs ran slower than the first)"
                        ),
                    )
                if stop:
                    data.notes.append(message)
                    if not quiet:
                        console().print(message)
            if distributed.broadcast(stop) or epoch + 1 >= train_cfg.epochs:  # the plan may have shortened
                break
    return distributed.on_main(
        lambda: _finish(task, config, run, data, model=evaluated, best=best, history=history, device=device)
    )


def _replan(config: RunConfig, run: Path, data, optimizer, *, steps: int, epochs: int, first: float, quiet: bool):
    """Fewer epochs to fit train.time_limit: the schedule rebuilt for them, past the first epoch's steps, and
    config.yaml rewritten so that a resume rebuilds the same plan."""
    train_cfg = config.train
    note = (
        f"train.time_limit {train_cfg.time_limit:g} min: the first epoch took {first:.0f} s (validation included), "
        f"so {epochs} of the {train_cfg.epochs} planned epochs, the schedule shortened to match"
    )
    train_cfg.epochs = epochs
    if distributed.is_main():
        save_config(config, run / "config.yaml")
    data.notes.append(note)
    if not quiet:
        console().print(note)
    return replanned_schedule(
        optimizer, name=train_cfg.schedule, lr=train_cfg.lr, steps_per_epoch=steps, epochs=epochs, done=steps
    )


def _cut_epoch(config: RunConfig, run: Path, data, optimizer, *, steps: int, cut: int, done: int, quiet: bool):
    """One epoch of `cut` of its `steps` steps, to fit train.time_limit: the schedule rebuilt to anneal over them,
    past the `done` already taken, and config.yaml rewritten (one epoch) so that a resume keeps the plan."""
    train_cfg = config.train
    note = (
        f"train.time_limit {train_cfg.time_limit:g} min: one epoch of {steps} steps would overrun it at the pace of "
        f"the first {done}, so this run trains {cut} steps ({100 * cut / steps:.0f}% of one epoch), its schedule "
        "annealing over them"
    )
    train_cfg.epochs = 1
    if distributed.is_main():
        save_config(config, run / "config.yaml")
    data.notes.append(note)
    if not quiet:
        console().print(note)
    return replanned_schedule(
        optimizer, name=train_cfg.schedule, lr=train_cfg.lr, steps_per_epoch=cut, epochs=1, done=done
    )


def _batch_that_fits(model, train_set, data, config, batch, user_batch, device, quiet) -> int:
    from medattn.engine.train_memory import estimate_training, fit_batch

    train_cfg = config.train
    memory = estimate_training(model, train_set, data, device=device, amp=train_cfg.amp, ema=bool(train_cfg.ema))
    fitted, note = distributed.broadcast(fit_batch(memory, batch, user_given=user_batch))
    if note:
        data.notes.append(note)
        train_cfg.batch_size = fitted  # config.yaml and the model card record the batch trained with
        if not quiet:
            console().print(note)
    return fitted


def _finish(task, config: RunConfig, run: Path, data, *, model, best: dict, history: list, device) -> dict:
    from safetensors.torch import load_file

    from medattn.engine.card import model_card

    with run_file(run, "checkpoint/best.safetensors"):
        weights = load_file(run / "checkpoint" / "best.safetensors")
        model.load_state_dict(weights)
    card = model_card(task, config, data, model=model, best=best, history=history, device=device)
    atomic_save_safetensors(run / "model.safetensors", weights, metadata={"medattn_model": config.model.name})
    atomic_write_json(run / "model.json", card)
    rate = f"train_{task.item}_per_second"
    return {
        "run": str(run),
        "task": task.name,
        "best_epoch": best["epoch"] + 1,
        "val": best["scores"],
        "epochs_run": len(history),
        rate: card["training"][f"{task.item}_per_second"],
        "checkpoint": str(run / CHECKPOINT),
        "notes": data.notes,
    }
