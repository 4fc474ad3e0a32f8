"""One contract for every registered classification model, in 2D and 3D, plus registry behaviour."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medattn.errors import ConfigError
from medattn.models import MODELS, Classifier, count_parameters, create_model
from medattn.registry import Registry

INPUTS = {2: (2, 2, 28, 28), 3: (2, 1, 16, 16, 16)}
CLASSIFIERS = MODELS.names("classification")


def build(name: str, dims: int, **options) -> Classifier:
    torch.manual_seed(0)
    return create_model(name, spatial_dims=dims, in_channels=INPUTS[dims][1], num_classes=3, options=options)


def test_registry_lists_the_families():
    assert {"cnn", "resnet18", "attn_resnet", "hybrid", "vit"} <= set(CLASSIFIERS)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_model_contract(name, dims, tmp_path):
    model = build(name, dims)
    assert isinstance(model, Classifier)
    assert (model.spatial_dims, model.in_channels, model.num_classes) == (dims, INPUTS[dims][1], 3)
    x = torch.randn(INPUTS[dims])

    # forward and backward in training mode
    logits = model(x)
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    for pname, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, pname
            assert torch.isfinite(param.grad).all(), pname

    # features and head compose to forward; features carry feature_channels
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[0] == 2
        assert model.feature_channels in (features.shape[1], features.shape[-1])
        expected = model(x)
        assert torch.allclose(model.forward_head(features), expected)

    # weights round-trip through safetensors into a model rebuilt from its config
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    config = model.config
    assert config["name"] == name
    torch.manual_seed(1)
    fresh = create_model(
        config["name"],
        spatial_dims=config["spatial_dims"],
        in_channels=config["in_channels"],
        num_classes=config["num_classes"],
        options=config["options"],
    )
    fresh.load_state_dict(load_file(str(path)))
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)


def test_unknown_model_suggests_close_match():
    with pytest.raises(ConfigError, match="attn_resnet"):
        create_model("atn_resnet", spatial_dims=2, in_channels=1, num_classes=2)


def test_unknown_option_is_config_error():
    with pytest.raises(ConfigError, match="invalid options"):
        create_model("cnn", spatial_dims=2, in_channels=1, num_classes=2, options={"widht": 3})


def test_registering_twice_raises():
    registry = Registry("model")
    registry.register("twice")(nn.Identity)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("twice")(nn.Identity)
    with pytest.raises(ValueError, match="already registered"):
        MODELS.register("cnn")(nn.Identity)


def test_resnet18_small_stem_matches_medmnist_parameter_count():
    model = create_model("resnet18", spatial_dims=2, in_channels=1, num_classes=2)
    assert abs(count_parameters(model) - 11_170_000) <= 10_000
    imagenet = create_model("resnet18", spatial_dims=2, in_channels=1, num_classes=2, options={"stem": "imagenet"})
    assert imagenet.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 512, 2, 2)
    with pytest.raises(ConfigError, match="small"):
        create_model("resnet18", spatial_dims=2, in_channels=1, num_classes=2, options={"stem": "tiny"})


@pytest.mark.parametrize("name", ["hybrid", "vit"])
@pytest.mark.parametrize("dims", [2, 3])
def test_attention_probabilities_are_recorded(name, dims):
    model = build(name, dims).eval()
    maps: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, key=key: maps.__setitem__(key, out))
        for key, module in model.named_modules()
        if key.rsplit(".", 1)[-1] == "attend"
    ]
    assert len(handles) == model.config["options"]["depth"]
    with torch.no_grad():
        tokens = model.forward_features(torch.randn(INPUTS[dims]))
    tokens_n = tokens.shape[1] if name == "vit" else tokens.flatten(2).shape[2]
    assert set(maps) == {f"encoder.blocks.{i}.attention.attend" for i in range(len(handles))}
    for probs in maps.values():
        assert probs.shape == (2, model.config["options"]["heads"], tokens_n, tokens_n)
        assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5)


@pytest.mark.parametrize("name", ["hybrid", "vit"])
def test_token_models_accept_other_input_sizes(name):
    model = build(name, 2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 48, 40)).shape == (1, 3)


@pytest.mark.parametrize("attention", ["se", "eca", "cbam", "none"])
def test_attn_resnet_attention_types(attention):
    model = build("attn_resnet", 2, attention=attention, widths=(8, 16), depths=(1, 2))
    blocks = [m for name, m in model.named_modules() if name.endswith(".attention")]
    assert len(blocks) == 3
    kinds = {
        "se": "SqueezeExcitation",
        "eca": "EfficientChannelAttention",
        "cbam": "CBAM",
        "none": "Identity",
    }
    assert all(type(block).__name__ == kinds[attention] for block in blocks)
    gates = [name for name, _ in model.named_modules() if name.endswith("gate")]
    expected_gates = {"se": 3, "eca": 3, "cbam": 6, "none": 0}[attention]
    assert len(gates) == expected_gates
    if attention == "cbam":
        assert any(name.endswith("attention.spatial.gate") for name in gates)
    assert model(torch.randn(INPUTS[2])).shape == (2, 3)


def test_attn_resnet_rejects_unknown_attention():
    with pytest.raises(ConfigError, match="cbam"):
        build("attn_resnet", 2, attention="transformer")
    with pytest.raises(ConfigError, match="equal length"):
        build("attn_resnet", 2, widths=(8, 16), depths=(1,))
