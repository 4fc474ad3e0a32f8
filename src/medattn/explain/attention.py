"""The model's own attention as a map on the input grid, from an `AttentionRecorder` (hooks.py).

In order of preference, what the model has:
- transformer self-attention: attention rollout (Abnar & Zuidema 2020): per block the head-averaged attention
  plus the identity, rows renormalised, multiplied through the blocks; the class token's row (ViT), or the mean
  row when the head pools every token (hybrid);
- spatial attention maps (CBAM's spatial gate, the attention gates of Attention U-Net): each resized to the
  input and averaged;
- channel attention only (SE, ECA): the last gated block's output (features times channel weights), averaged
  over channels and rectified; the channel weights themselves are returned beside the map.
"""

from __future__ import annotations

import torch

from medattn.errors import ConfigError
from medattn.explain.cam import resize_map
from medattn.explain.hooks import AttentionRecorder, as_grid


def rollout(probabilities: list[torch.Tensor], input_shape) -> torch.Tensor:
    """(1, *g) from each block's attention (1, heads, N, N)."""
    tokens = probabilities[0].shape[-1]
    eye = torch.eye(tokens)
    joint = eye
    for probs in probabilities:
        mixed = probs[0].mean(dim=0) + eye  # (N, N)
        joint = (mixed / mixed.sum(dim=-1, keepdim=True)) @ joint
    grid_tokens = as_grid(torch.zeros(1, tokens, 1), tuple(input_shape)).shape[2:]
    has_cls = tokens != int(torch.tensor(grid_tokens).prod())
    row = joint[0, 1:] if has_cls else joint.mean(dim=0)
    return row.reshape(1, *grid_tokens)


def attention_map(recorder: AttentionRecorder, input_shape) -> tuple[torch.Tensor, dict]:
    """((*S) map on the input grid, {module: channel weights}) from one recorded forward pass of one input."""
    dims = len(input_shape)
    tokens = [p for _, kind, p in recorder.records if kind == "softmax" and p.ndim == 4]
    gates = [(name, p) for name, kind, p in recorder.records if kind == "sigmoid" and p.ndim == 2 + dims]
    channel = {name: p[0].flatten().tolist() for name, p in gates if p.shape[2:].numel() == 1}
    spatial = [p for _, p in gates if p.shape[1] == 1 and p.shape[2:].numel() > 1]
    if tokens:
        return resize_map(rollout(tokens, input_shape), input_shape)[0], channel
    if spatial:
        maps = [resize_map(p[:, 0].float(), input_shape) for p in spatial]
        return torch.stack(maps).mean(dim=0)[0], channel
    gated = [p for name, p in recorder.weighted if p.ndim == 2 + dims and p.shape[2:].numel() > 1]
    if gated:
        return resize_map(gated[-1].mean(dim=1).clamp(min=0), input_shape)[0], channel
    raise ConfigError(
        "the model has no attention modules (no `attend` or `gate` submodule recorded a map); "
        "use gradcam, hirescam or another method"
    )
