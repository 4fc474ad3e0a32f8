"""One entry point for every method: a map (*S) on the model's input grid for one input x (1, C, *S).

Positive values support the target. The model is only read: it stays in eval mode, its parameters and
buffers are untouched and every hook is removed, so explaining never changes a prediction.
"""

from __future__ import annotations

import torch

from medattn.errors import ConfigError
from medattn.explain.attention import attention_map
from medattn.explain.attribution import integrated_gradients, occlusion
from medattn.explain.cam import CAMS, cam, resize_map
from medattn.explain.hooks import AttentionRecorder, LayerRecorder, as_grid
from medattn.explain.target import Target

METHODS = ("attention", *CAMS, "occlusion", "integrated_gradients")


def parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ConfigError(f"--method {text!r}: methods are {', '.join(METHODS)} (comma-separated)")
    return names


def explain_input(model, x: torch.Tensor, target: Target, method: str, *, layer: str | None = None) -> torch.Tensor:
    """(*S) float32 map for one standardised input x (1, C, *S)."""
    shape = tuple(x.shape[2:])

    def score(batch):
        return target.score(model(batch))

    if target.empty:  # a segmentation target with no region in this window: nothing to explain
        return torch.zeros(shape)
    with torch.enable_grad():
        if method in CAMS:
            with LayerRecorder(model, layer) as recorder:
                total = score(x).sum()
                activation = recorder.activation
                if activation is None or not activation.requires_grad:
                    raise ConfigError(f"--layer {layer!r} recorded no output that depends on the input")
                (gradient,) = torch.autograd.grad(total, activation)
            grid, grads = as_grid(activation, shape), as_grid(gradient, shape)
            return resize_map(cam(method, grid.detach(), grads), shape)[0].float()
        if method == "integrated_gradients":
            return integrated_gradients(score, x).float()
    if method == "occlusion":
        return occlusion(score, x).float()
    if method == "attention":
        with torch.no_grad(), AttentionRecorder(model) as recorder:
            model(x)
        return attention_map(recorder, shape)[0].float()
    raise ConfigError(f"unknown method {method!r}: one of {', '.join(METHODS)}")


def channel_weights(model, x: torch.Tensor) -> dict[str, list[float]]:
    """{module: channel weights} of every SE / ECA / CBAM channel gate for one input (1, C, *S)."""
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(x)
    try:
        return attention_map(recorder, tuple(x.shape[2:]))[1]
    except ConfigError:
        return {}
