"""Resume state: written atomically after every epoch, read back with weights_only=True (never a pickle)."""

from __future__ import annotations

from pathlib import Path

from medattn.config import RunConfig, load_config
from medattn.runs import CHECKPOINT, atomic_save_torch, run_file


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
    loss=None,
) -> None:
    """`loss`, when given, is a loss with trainable state of its own (its `state_dict()` is saved beside the
    model's)."""
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
        "loss": None if loss is None else loss.state_dict(),
    }
    atomic_save_torch(run / CHECKPOINT, payload)


def resume_config(run: Path) -> RunConfig:
    """The config a run resumes with; a damaged config.yaml, or one naming an unknown model, is an error naming it."""
    with run_file(run, "config.yaml"):
        config = load_config(run / "config.yaml")
        if config.model.name is not None:
            import medattn.models  # noqa: F401  (registers the models)
            from medattn.registry import MODELS

            MODELS.get(config.model.name)
    return config


def load_checkpoint(run: Path) -> dict:
    import torch

    with run_file(run, CHECKPOINT):  # torch raises several types for a damaged file; report them as one
        return torch.load(run / CHECKPOINT, map_location="cpu", weights_only=True)


def restore(run: Path, state: dict, *, model, optimizer, scheduler, ema, generators: dict, loss=None) -> None:
    with run_file(run, CHECKPOINT):  # a checkpoint of another model, or one missing a part
        _restore(
            state, model=model, optimizer=optimizer, scheduler=scheduler, ema=ema, generators=generators, loss=loss
        )


def _restore(state: dict, *, model, optimizer, scheduler, ema, generators: dict, loss=None) -> None:
    import torch

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None and state["ema"] is not None:
        ema.load_state_dict(state["ema"])
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
    torch.set_rng_state(state["torch_rng"])
    if loss is not None:
        if state.get("loss") is None:
            raise KeyError("the checkpoint holds no state for the loss (its discriminator): it is another run's")
        loss.load_state_dict(state["loss"])
