"""Recording what a model computed, without changing it: the target layer's activations and their gradients,
and the output of every attention submodule (`attend`: softmax or attention-gate sigmoid; `gate`: SE, ECA and
CBAM sigmoids).

The target layer is by default what `forward_head` receives: the last spatial block before the head (the
last residual stage, a hybrid's transformer tokens laid back on their grid, the U-Net's last decoder level). A
model whose head reads one token (ViT's class token) names a better one as `cam_layer` (the last block's input,
where the patch tokens still carry the gradient). `layer="stages.1"` names any module by its dotted path
instead. Every hook is removed on exit, and `forward_head` is the model's own again.
"""

from __future__ import annotations

import difflib
import math

import torch
from torch import nn

from medattn.errors import ConfigError

ATTENTION_NAMES = ("attend", "gate")


def find_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    close = difflib.get_close_matches(name, list(modules), n=5, cutoff=0.5)
    hint = f"; close: {', '.join(close)}" if close else ""
    raise ConfigError(f"--layer {name!r} is not a module of {type(model).__name__}{hint}")


def as_grid(features: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """(B, C, *grid) from a feature map, or from tokens (B, N, D) / (B, 1 + N, D) laid back on their grid."""
    dims = len(input_shape)
    if features.ndim == 2 + dims:
        return features
    if features.ndim != 3:
        raise ConfigError(f"the target layer's output {tuple(features.shape)} is neither a feature map nor tokens")
    for skip in (0, 1):  # a class token first (ViT) is dropped
        count = features.shape[1] - skip
        ratio = (math.prod(input_shape) / max(count, 1)) ** (1 / dims)
        grid = [max(1, round(side / ratio)) for side in input_shape]
        if math.prod(grid) == count:
            tokens = features[:, skip:]  # (B, N, D)
            return tokens.transpose(1, 2).reshape(features.shape[0], features.shape[2], *grid)
    raise ConfigError(f"cannot lay {features.shape[1]} tokens on a grid for an input of {list(input_shape)}")


class LayerRecorder:
    """`with LayerRecorder(model, layer) as rec:` then `rec.activation` and, after a backward pass through it,
    `rec.gradient` (the last call's, laid on the grid by `as_grid` when it is tokens)."""

    def __init__(self, model: nn.Module, layer: str | None) -> None:
        self.model, self.layer = model, layer
        self.activation: torch.Tensor | None = None
        self._handle = None

    def _keep(self, output) -> None:
        output = output[0] if isinstance(output, tuple | list) else output
        self.activation = output

    def __enter__(self) -> LayerRecorder:
        self.layer = self.layer or getattr(self.model, "cam_layer", None)
        if self.layer is None:
            original = self.model.forward_head

            def recorded(features):
                self._keep(features)
                return original(features)

            self.model.forward_head = recorded  # instance attribute: the class's method is untouched
        else:
            module = find_layer(self.model, self.layer)
            self._handle = module.register_forward_hook(lambda _m, _i, out: self._keep(out))
        return self

    def __exit__(self, *exc) -> None:
        if self.layer is None:
            del self.model.forward_head
        elif self._handle is not None:
            self._handle.remove()


class AttentionRecorder:
    """Every `attend` / `gate` submodule's output, and the output of the module owning a channel gate (the
    features it weighted), in call order: `records` is [(name, kind, tensor)] with kind softmax | sigmoid,
    `weighted` is [(name, tensor)]."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.records: list[tuple[str, str, torch.Tensor]] = []
        self.weighted: list[tuple[str, torch.Tensor]] = []
        self._handles = []

    def __enter__(self) -> AttentionRecorder:
        modules = dict(self.model.named_modules())
        for name, module in modules.items():
            parts = name.rsplit(".", 1)
            if parts[-1] not in ATTENTION_NAMES or not isinstance(module, nn.Softmax | nn.Sigmoid):
                continue
            kind = "softmax" if isinstance(module, nn.Softmax) else "sigmoid"
            self._handles.append(module.register_forward_hook(self._saver(self.records, name, kind)))
            owner = modules.get(parts[0]) if len(parts) == 2 else None
            if owner is not None and kind == "sigmoid":
                self._handles.append(owner.register_forward_hook(self._saver(self.weighted, parts[0])))
        return self

    @staticmethod
    def _saver(store: list, name: str, kind: str | None = None):
        def save(_module, _inputs, output):
            store.append((name, output.detach()) if kind is None else (name, kind, output.detach()))

        return save

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
