"""Contracts of the building blocks: shapes in 2D and 3D, gates in (0, 1), attention math by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError
from medattn.layers import (
    CBAM,
    AttentionGate,
    ClassifierHead,
    ConvNormAct,
    EfficientChannelAttention,
    GridPositionEmbedding,
    MultiHeadAttention,
    SpatialAttention,
    SqueezeExcitation,
    TransformerBlock,
    activation,
    conv_type,
    eca_kernel_size,
    norm_layer,
    pool_type,
)

SHAPES = {2: (2, 16, 6, 5), 3: (2, 16, 4, 5, 3)}


def record(module: nn.Module) -> tuple[list[torch.Tensor], torch.utils.hooks.RemovableHandle]:
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
    return outputs, handle


def test_mha_cross_attention_shapes_and_probabilities():
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, heads=3, context_dim=5)
    probs, _ = record(mha.attend)
    x, context = torch.randn(2, 7, 12), torch.randn(2, 4, 5)
    out = mha(x, context)
    assert out.shape == (2, 7, 12)
    assert probs[0].shape == (2, 3, 7, 4)
    assert torch.allclose(probs[0].sum(-1), torch.ones(2, 3, 7))
    self_attention = MultiHeadAttention(12, heads=3)
    self_probs, _ = record(self_attention.attend)
    assert self_attention(x).shape == (2, 7, 12)
    assert self_probs[0].shape == (2, 3, 7, 7)


@pytest.mark.parametrize("heads", [1, 3])
def test_mha_matches_scaled_dot_product_attention(heads):
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, heads=heads).eval()
    x, context = torch.randn(2, 5, 12), torch.randn(2, 8, 12)
    q = mha.to_q(x).reshape(2, 5, heads, -1).transpose(1, 2)
    k, v = mha.to_kv(context).chunk(2, dim=-1)
    k, v = (t.reshape(2, 8, heads, -1).transpose(1, 2) for t in (k, v))
    expected = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 12)
    assert torch.allclose(mha(x, context), mha.to_out(expected), atol=1e-5)


def test_mha_single_head_by_hand():
    mha = MultiHeadAttention(2, heads=1)
    with torch.no_grad():
        mha.to_q.weight.copy_(torch.eye(2))
        mha.to_kv.weight.copy_(torch.cat([torch.eye(2), torch.eye(2)]))
        mha.to_out.weight.copy_(torch.eye(2))
        mha.to_out.bias.zero_()
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two orthogonal tokens
    weight = torch.softmax(torch.tensor([1.0, 0.0]) / 2**0.5, dim=0)  # scores 1 (self), 0 (other)
    expected = torch.tensor([[[weight[0], weight[1]], [weight[1], weight[0]]]])
    assert torch.allclose(mha(x), expected, atol=1e-6)


def test_mha_rejects_indivisible_dim():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, heads=3)
    assert MultiHeadAttention(10, heads=3, head_dim=4)(torch.randn(1, 2, 10)).shape == (1, 2, 10)


def test_transformer_block_cross_attention():
    block = TransformerBlock(8, heads=2, context_dim=6)
    assert block(torch.randn(2, 3, 8), torch.randn(2, 5, 6)).shape == (2, 3, 8)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(
    ("build", "gate_names"),
    [
        (lambda d: SqueezeExcitation(16, spatial_dims=d, reduction=4), ["gate"]),
        (lambda d: EfficientChannelAttention(16, spatial_dims=d), ["gate"]),
        (lambda d: CBAM(16, spatial_dims=d, reduction=4), ["channel.gate", "spatial.gate"]),
        (lambda d: SpatialAttention(d, kernel_size=3), ["gate"]),
    ],
    ids=["se", "eca", "cbam", "spatial"],
)
def test_attention_blocks_preserve_shape_and_gate_in_unit_interval(dims, build, gate_names):
    torch.manual_seed(0)
    block = build(dims)
    gates = {name: record(block.get_submodule(name))[0] for name in gate_names}
    x = torch.randn(SHAPES[dims])
    out = block(x)
    assert out.shape == x.shape
    for name, outputs in gates.items():
        gate = outputs[0]
        assert gate.ndim == x.ndim, name
        assert ((gate > 0) & (gate < 1)).all(), name
    # a gate in (0, 1) only rescales: never flips a sign, never grows a value
    assert (out * x >= 0).all()
    assert (out.abs() <= x.abs() + 1e-6).all()


def test_eca_kernel_follows_paper():
    assert [eca_kernel_size(c) for c in (16, 64, 256, 512)] == [3, 3, 5, 5]
    assert EfficientChannelAttention(64, spatial_dims=2, kernel_size=7).conv.kernel_size == (7,)


@pytest.mark.parametrize("dims", [2, 3])
def test_attention_gate_is_skip_times_gate_with_coarse_gating(dims):
    torch.manual_seed(0)
    gate = AttentionGate(spatial_dims=dims, skip_channels=4, gating_channels=6, inter_channels=3)
    alphas, _ = record(gate.attend)
    skip = torch.randn(2, 4, *([8] * dims))
    gating = torch.randn(2, 6, *([4] * dims))  # half resolution
    out = gate(skip, gating)
    alpha = alphas[0]
    assert out.shape == skip.shape
    assert alpha.shape == (2, 1, *([8] * dims))
    assert ((alpha > 0) & (alpha < 1)).all()
    assert torch.allclose(out, skip * alpha)


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_norm_act_and_head(dims):
    block = ConvNormAct(3, 8, spatial_dims=dims, kernel_size=3, stride=2, norm="group")
    x = torch.randn(2, 3, *([6] * dims))
    fmap = block(x)
    assert fmap.shape == (2, 8, *([3] * dims))
    head = ClassifierHead(8, 5, spatial_dims=dims)
    pooled = fmap.flatten(2).mean(2)
    assert torch.allclose(head(fmap), head(pooled))
    with pytest.raises(ValueError, match="spatial axes"):
        head(torch.randn(2, 8, 3))


@pytest.mark.parametrize("dims", [2, 3])
def test_factories_lookups(dims):
    assert conv_type(dims).__name__ == f"Conv{dims}d"
    assert pool_type("adaptive_max", dims).__name__ == f"AdaptiveMaxPool{dims}d"
    for name in ("batch", "instance", "group", "layer"):
        x = torch.randn(2, 6, *([3] * dims))
        assert norm_layer(name, dims, 6)(x).shape == x.shape
    for name in ("relu", "gelu", "silu", "leaky_relu"):
        assert isinstance(activation(name), nn.Module)


@pytest.mark.parametrize(
    ("call", "valid"),
    [
        (lambda: norm_layer("batchy", 2, 4), "instance"),
        (lambda: activation("swish"), "silu"),
        (lambda: pool_type("median", 2), "adaptive_avg"),
        (lambda: conv_type(4), "2 or 3"),
        (lambda: ConvNormAct(1, 2, spatial_dims=2, norm="weird"), "batch"),
    ],
)
def test_factories_reject_unknown_names(call, valid):
    with pytest.raises(ConfigError, match=valid):
        call()


@pytest.mark.parametrize("dims", [2, 3])
def test_grid_position_embedding_resizes(dims):
    embed = GridPositionEmbedding(4, spatial_dims=dims, grid=3)
    assert embed((3,) * dims).shape == (1, 3**dims, 4)
    assert torch.equal(embed((3,) * dims), embed.weight.flatten(2).transpose(1, 2))
    assert embed((5,) * dims).shape == (1, 5**dims, 4)
