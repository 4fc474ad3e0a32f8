"""What every training loop does the same way: one optimizer update, and the end-of-epoch bookkeeping
(best weights kept atomically, resume state, history.csv)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medattn.engine import checkpoint as ckpt
from medattn.errors import TrainingDiverged
from medattn.runs import CHECKPOINT, atomic_save_safetensors, atomic_write_text


def optimizer_step(
    loss, *, model, optimizer, scaler, scheduler, grad_clip: float, epoch: int, step: int, run: Path
) -> None:
    """Backward (scaled under fp16), clip the gradient norm, step and advance the schedule.

    A loss that is no longer finite stops the run here, before it can reach the weights (`epoch` and `step`
    count from 0; the message counts from 1).
    """
    import torch

    if not torch.isfinite(loss):
        raise TrainingDiverged(_diverged(run, epoch, step, loss.item()))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def _diverged(run: Path, epoch: int, step: int, value: float) -> str:
    # Checkpoints are written at the end of every epoch, so the one on disk is from the epoch before this one.
    kept = (
        f"the last good checkpoint, {run / CHECKPOINT} (after epoch {epoch}), is kept: lower train.lr in "
        f"{run / 'config.yaml'} and continue with `medattn train --out {run} --resume`, or start again with --force"
        if epoch > 0
        else "no epoch had finished, so there is no checkpoint: start again with a lower --lr and --force"
    )
    return f"epoch {epoch + 1}, step {step + 1}: the loss became {value}; training stopped before the update. {kept}"


def end_epoch(
    run: Path,
    *,
    epoch: int,
    score: float,
    scores: dict,
    best: dict,
    evaluated,
    history: list[dict],
    columns: Sequence[str],
    state: dict,
) -> tuple[dict, bool]:
    """Keep `evaluated`'s weights as the best when `score` beats it, then write the resume state and history.

    `state` holds what checkpoint.save_checkpoint needs besides epoch, best and history (model, optimizer,
    scheduler, ema, generators). Returns the best so far and whether this epoch became it.
    """
    improved = score > best["score"]
    if improved:
        best = {"score": score, "epoch": epoch, "scores": scores}
        atomic_save_safetensors(run / "checkpoint" / "best.safetensors", evaluated.state_dict())
    ckpt.save_checkpoint(run, epoch=epoch, best=best, history=history, **state)
    write_history(run, history, columns)
    return best, improved


def write_history(run: Path, history: list[dict], columns: Sequence[str]) -> None:
    """history.csv: one row per epoch, floats to 6 significant digits (written atomically)."""
    lines = [",".join(columns)]
    lines += [
        ",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in columns) for row in history
    ]
    atomic_write_text(run / "history.csv", "\n".join(lines) + "\n")
