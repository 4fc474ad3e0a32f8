"""Structured channel pruning: whole filters removed from the inside of residual and U-Net blocks, so the network
really gets narrower (fewer parameters, fewer multiply-adds), not sparser.

Only the channels *inside* a block are pruned: the output of a block's first conv-norm-act, read by nothing but
the block's next conv. A block's output channels are left alone, so residual sums, shortcuts, attention (SE, ECA,
CBAM on the block's output), skips, gates and heads stay consistent without rewiring. The kept widths are recorded
in the model's options under `pruned` ({layer path: kept channels}); `registry.create_model` builds the full model
and narrows those layers (`narrow`), so a pruned run's config.yaml and model card rebuild it everywhere
(`load_run`, `evaluate`, `predict`, `export`, `serve`, resume).

Which filters stay: the largest L1 norms of the producing conv's filters (Li et al. 2017, "Pruning Filters for
Efficient ConvNets").
"""

from __future__ import annotations

from typing import Any

from medattn.errors import ConfigError

PRUNED = "pruned"  # the model option holding {layer path: kept channels}


def prunable_pairs(model) -> dict[str, str]:
    """{producer path: consumer path}: a conv-norm-act whose output only the consumer's conv reads."""
    from medattn.models.resnet import BottleneckBlock, ResidualBlock
    from medattn.models.unet import ConvBlock

    pairs: dict[str, str] = {}
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        if isinstance(module, ResidualBlock | ConvBlock):
            links = [("conv1", "conv2")]
        elif isinstance(module, BottleneckBlock):
            links = [("reduce", "conv"), ("conv", "expand")]
        else:
            continue
        for producer, consumer in links:
            if getattr(module, producer).conv.groups == 1 and getattr(module, consumer).conv.groups == 1:
                pairs[prefix + producer] = prefix + consumer
    return pairs


def check_prunable(model, name: str) -> dict[str, str]:
    pairs = prunable_pairs(model)
    if not pairs:
        raise ConfigError(
            f"model {name!r} cannot be pruned: it has no residual (ResidualBlock, BottleneckBlock) or U-Net "
            "(ConvBlock) blocks whose inner channels can be removed; prunable defaults: attn_resnet, resnet18-50, "
            "unet, attention_unet, trans_unet"
        )
    return pairs


def narrow(model, kept: dict[str, int]) -> None:
    """Rebuild the layers `kept` names with fewer channels (fresh weights) and record the widths in the options."""
    pairs = check_prunable(model, model.config["name"])
    for path, count in kept.items():
        if path not in pairs:
            raise ConfigError(f"model option {PRUNED}: {path!r} is not a prunable layer (prunable: {', '.join(pairs)})")
        producer, consumer = model.get_submodule(path), model.get_submodule(pairs[path])
        if not isinstance(count, int) or not 1 <= count <= producer.conv.out_channels:
            raise ConfigError(
                f"model option {PRUNED}: {path} keeps {count!r} channels; it has {producer.conv.out_channels}"
            )
        producer.conv = _conv_like(producer.conv, out_channels=count)
        producer.norm = _norm_like(producer.norm, count)
        consumer.conv = _conv_like(consumer.conv, in_channels=count)
    model._options[PRUNED] = dict(kept)


def _conv_like(conv, *, in_channels: int | None = None, out_channels: int | None = None):
    return type(conv)(
        in_channels or conv.in_channels,
        out_channels or conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
    )


def _norm_like(norm, channels: int):
    from torch import nn

    from medattn.layers.factories import ChannelLayerNorm

    if isinstance(norm, nn.Identity):
        return norm
    if isinstance(norm, nn.GroupNorm):  # the largest group count not above the original that divides the width
        groups = max(g for g in range(1, min(norm.num_groups, channels) + 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels, eps=norm.eps)
    if isinstance(norm, ChannelLayerNorm):
        return ChannelLayerNorm(channels, eps=norm.norm.eps)
    if isinstance(norm, nn.modules.batchnorm._NormBase):  # batch and instance norm
        return type(norm)(channels, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                          track_running_stats=norm.track_running_stats)  # fmt: skip
    raise ConfigError(f"cannot prune across a {type(norm).__name__} normalisation")


def prune_model(model, sparsity: float):
    """A new, narrower model: `sparsity` of every prunable layer's filters removed (the smallest L1 norms), the
    rest of the weights copied. Returns (pruned model, {layer path: kept channels})."""
    from medattn.registry import model_from_card

    if not 0.0 < sparsity < 1.0:
        raise ConfigError(f"--prune {sparsity}: the share of inner channels to remove must be between 0 and 1")
    config = model.config
    pairs = check_prunable(model, config["name"])
    weights = model.state_dict()
    kept: dict[str, int] = {}
    for path, consumer in pairs.items():
        filters = weights[f"{path}.conv.weight"]  # (C_out, C_in, *kernel)
        count = max(1, round(filters.shape[0] * (1.0 - sparsity)))
        norms = filters.abs().flatten(1).sum(dim=1)  # (C_out,) L1 norm of each filter
        keep = norms.topk(count).indices.sort().values
        kept[path] = count
        for key in [k for k in weights if k.startswith((f"{path}.conv.", f"{path}.norm."))]:
            if weights[key].ndim and weights[key].shape[0] == filters.shape[0]:
                weights[key] = weights[key][keep]
        weights[f"{consumer}.conv.weight"] = weights[f"{consumer}.conv.weight"][:, keep]
    options: dict[str, Any] = {**config["options"], PRUNED: kept}
    pruned = model_from_card({**config, "options": options})
    pruned.load_state_dict({k: v.clone() for k, v in weights.items()})
    pruned.train(model.training)
    return pruned, kept
