"""`--init RUN`: start from another run's weights (every layer but the head), e.g. to pretrain on one
medical set and fine-tune on another. The architecture must match; the head is always fresh."""

from __future__ import annotations

from pathlib import Path

from medattn.errors import ConfigError
from medattn.runs import read_json, require_run

HEAD_PREFIX = ("head.", "aux_heads.")  # output layers: sized by the classes, never copied


def load_backbone(model, init_run: str | Path, *, name: str, options: dict, spatial_dims: int) -> int:
    """Copy the init run's weights into `model` except the head. Returns how many tensors were copied."""
    from safetensors.torch import load_file

    from medattn.registry import model_from_card

    run = require_run(init_run)
    card = read_json(run / "model.json")["model"]
    # both sides as built, every option spelled out: a card may list only the options its run was given
    built = model_from_card(card)
    theirs = (card["name"], card["spatial_dims"], built.config["options"])
    if theirs != (name, spatial_dims, model.config["options"]):
        raise ConfigError(
            f"--init {run}: its model is {card['name']} {card['spatial_dims']}D with options {card['options']}, "
            f"but this run builds {name} {spatial_dims}D with options {options}: the architectures do not match"
        )
    weights = load_file(run / "model.safetensors")
    own = model.state_dict()
    body = {k: v for k, v in weights.items() if not k.startswith(HEAD_PREFIX)}
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in body.items()
        if k in own and v.shape != own[k].shape
    ]
    missing = sorted(set(body) ^ {k for k in own if not k.startswith(HEAD_PREFIX)})
    if wrong or missing:
        detail = "; ".join(wrong[:3] + missing[:3])
        raise ConfigError(
            f"--init {run}: {len(wrong) + len(missing)} tensor(s) do not fit this model ({detail}); "
            "a different number of input channels cannot be transferred"
        )
    model.load_state_dict(body, strict=False)
    return len(body)
