"""Loading a finished run and predicting with it, exactly as it was trained (its card says how)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medattn.config import RunConfig, load_config
from medattn.data.preprocess import Intensity
from medattn.runs import read_json, require_run


@dataclass
class LoadedRun:
    path: Path
    config: RunConfig
    card: dict
    model: object  # torch.nn.Module in eval mode

    @property
    def task(self) -> str:
        return self.card["task"]

    @property
    def intensity(self) -> Intensity:
        return Intensity.from_dict(self.card["input"]["intensity"])

    @property
    def size(self) -> list[int]:
        return self.card["input"]["size"]


def load_run(run: str | Path, *, device=None) -> LoadedRun:
    from safetensors.torch import load_file

    from medattn.registry import create_model

    run = require_run(run)
    config = load_config(run / "config.yaml")
    card = read_json(run / "model.json")
    spec = card["model"]
    model = create_model(
        spec["name"],
        spatial_dims=spec["spatial_dims"],
        in_channels=spec["in_channels"],
        num_classes=spec["num_classes"],
        options=spec["options"],
    )
    model.load_state_dict(load_file(run / "model.safetensors"))
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedRun(run, config, card, model)


def tta_flips(config: RunConfig, spatial_dims: int) -> list[int]:
    """Tensor dims to flip at test time: the spatial axes training flipped (left-right if it flipped none).

    A run's config.yaml holds the resolved list; a preset name is resolved here (`auto` by data.modality).
    """
    from medattn.data.presets import resolve_augment

    axes = set()
    specs = resolve_augment(config.data.augment, spatial_dims=spatial_dims, modality=config.data.modality)
    for spec in specs:
        if spec.get("name") == "flip":
            axes |= set(spec.get("axes") or range(-spatial_dims, 0))
    return sorted({a if a < 0 else a - spatial_dims for a in axes}) or [-1]


def predict_probs(
    model, x, *, task: str, batch_size: int = 256, device=None, amp: bool = False, flips: list[int] | None = None
) -> np.ndarray:
    """Probabilities (N, K) for a standardised input tensor (N, C, *spatial).

    With `flips`, test-time augmentation: the mean of the probabilities of the image and of its flip along
    each listed spatial axis (negative, counted from the end).
    """
    import torch

    from medattn.train.device import autocast
    from medattn.train.losses import probabilities

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    views = [None, *(flips or [])]
    chunks = []
    with torch.inference_mode(), autocast(device, amp):
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(device)
            probs = [probabilities(model(batch if axis is None else batch.flip(axis)).float(), task) for axis in views]
            chunks.append(torch.stack(probs).mean(dim=0).cpu())
    model.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float64)
