"""Resume state: written atomically after every epoch, read back with weights_only=True (never a pickle)."""

from __future__ import annotations

from pathlib import Path

from medattn.errors import RunDirError
from medattn.runs import CHECKPOINT, atomic_save_torch


def save_checkpoint(
    run: Path,
    *,
    model,
    optimizer,
    scheduler,
    ema,
    epoch: int,
    best: dict,
    history: list[dict],
    generators: dict,
) -> None:
    import torch

    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": None if ema is None else ema.state_dict(),
        "epoch": epoch,
        "best": best,
        "history": history,
        "generators": {name: g.get_state() for name, g in generators.items()},
        "torch_rng": torch.get_rng_state(),
    }
    atomic_save_torch(run / CHECKPOINT, payload)


def load_checkpoint(run: Path) -> dict:
    import torch

    path = run / CHECKPOINT
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file; report them as one
        raise RunDirError(f"cannot resume from {path}: the checkpoint is unreadable ({error})") from error


def restore(state: dict, *, model, optimizer, scheduler, ema, generators: dict) -> None:
    import torch

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None and state["ema"] is not None:
        ema.load_state_dict(state["ema"])
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
    torch.set_rng_state(state["torch_rng"])
