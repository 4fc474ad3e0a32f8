"""One contract for the segmentation models (unet, attention_unet, trans_unet), in 2D and 3D."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import medattn.models.unet  # noqa: F401  (registers the segmentation models even before models/__init__ does)
from medattn.errors import ConfigError
from medattn.models.unet import Segmenter
from medattn.registry import MODELS, create_model

SEGMENTERS = ("attention_unet", "trans_unet", "unet")
# sides that are not multiples of 2 ** (levels - 1) = 8, so the decoder must crop
INPUTS = {2: (2, 1, 30, 22), 3: (1, 1, 14, 18, 10)}
CLASSES = 3


def build(name: str, dims: int, **options) -> Segmenter:
    torch.manual_seed(0)
    return create_model(name, spatial_dims=dims, in_channels=1, num_classes=CLASSES, options=options)


def hook_attend(model: torch.nn.Module, maps: dict[str, torch.Tensor]) -> list:
    """Record the output of every submodule named `attend`, keyed by its qualified name."""
    return [
        module.register_forward_hook(lambda _m, _i, out, key=key: maps.__setitem__(key, out))
        for key, module in model.named_modules()
        if key.rsplit(".", 1)[-1] == "attend"
    ]


def test_registered_for_segmentation_only():
    assert set(SEGMENTERS) <= set(MODELS.names("segmentation"))
    assert not set(SEGMENTERS) & set(MODELS.names("classification"))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmentation_contract(name, dims, tmp_path):
    model = build(name, dims)
    assert isinstance(model, Segmenter)
    assert (model.spatial_dims, model.in_channels, model.num_classes) == (dims, 1, CLASSES)
    x = torch.randn(INPUTS[dims])

    # logits at input resolution, even for odd sides; finite gradients reach every parameter
    logits = model(x)
    assert logits.shape == (x.shape[0], CLASSES, *x.shape[2:])
    assert torch.isfinite(logits).all()
    (logits * torch.randn_like(logits)).sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
    assert model.aux_logits == []  # deep supervision is off by default

    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (x.shape[0], model.feature_channels, *x.shape[2:])
        expected = model(x)
        assert torch.allclose(model.forward_head(features), expected)

    # weights round-trip through safetensors into a model rebuilt from its config
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    config = model.config
    assert config["name"] == name
    assert config["options"]["channels"] == [16, 32, 64, 128]
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


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", SEGMENTERS)
def test_deep_supervision_only_in_training(name, dims):
    model = build(name, dims, channels=(8, 16, 32, 64), deep_supervision=True)
    x = torch.randn(INPUTS[dims])
    logits = model.train()(x)
    assert len(model.aux_logits) == 2  # decoder levels 1 and 2; level 0 is the main output
    for aux in model.aux_logits:
        assert aux.shape == logits.shape
    # the auxiliary heads train through the aux logits
    sum(aux.sum() for aux in model.aux_logits).backward()
    for head in model.aux_heads:
        assert head.weight.grad is not None
        assert head.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.eval()(x).shape == logits.shape
    assert model.aux_logits == []


@pytest.mark.parametrize("dims", [2, 3])
def test_attention_gate_maps_are_recorded(dims):
    model = build("attention_unet", dims, channels=(8, 16, 32)).eval()
    maps: dict[str, torch.Tensor] = {}
    assert len(hook_attend(model, maps)) == 2  # one gate per skip
    x = torch.randn(INPUTS[dims])
    skips = []
    with torch.no_grad():
        model(x)
        h = x
        for level in model.encoder[:-1]:
            h = level(h)
            skips.append(h)
    assert set(maps) == {"decoder.0.gate.attend", "decoder.1.gate.attend"}
    # decoder[0] gates the deepest skip (level 1), decoder[1] the full-resolution one (level 0)
    for index, skip in zip((1, 0), skips, strict=True):
        alpha = maps[f"decoder.{index}.gate.attend"]
        assert alpha.shape == (x.shape[0], 1, *skip.shape[2:])
        assert ((alpha > 0) & (alpha < 1)).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_trans_unet_attention_rows_sum_to_one(dims):
    model = build("trans_unet", dims, channels=(8, 16, 32), embed_dim=32, depth=2, heads=4).eval()
    maps: dict[str, torch.Tensor] = {}
    assert len(hook_attend(model, maps)) == 2
    x = torch.randn(INPUTS[dims])
    with torch.no_grad():
        model(x)
    tokens = 1
    for side in x.shape[2:]:
        tokens *= -(-side // 4)  # two stride-2 convs round up
    assert set(maps) == {f"bottleneck.encoder.blocks.{i}.attention.attend" for i in range(2)}
    for probs in maps.values():
        assert probs.shape == (x.shape[0], 4, tokens, tokens)
        assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5)


def dice(predicted: torch.Tensor, mask: torch.Tensor) -> float:
    overlap = ((predicted == 1) & (mask == 1)).sum().item()
    return 2 * overlap / max((predicted == 1).sum().item() + (mask == 1).sum().item(), 1)


def test_unet_overfits_one_image():
    torch.manual_seed(0)
    mask = torch.zeros(1, 32, 32, dtype=torch.long)
    mask[:, 10:22, 8:20] = 1
    # noisy enough that thresholding each pixel scores Dice ~0.6: the net must learn, not pass intensity through
    image = (mask.float() + 0.5 * torch.randn(1, 32, 32)).unsqueeze(1)  # (1, 1, 32, 32)
    assert dice((image[:, 0] > 0.5).long(), mask) < 0.7
    model = create_model("unet", spatial_dims=2, in_channels=1, num_classes=2, options={"channels": (8, 16, 32)})
    with torch.no_grad():
        assert dice(model.eval()(image).argmax(1), mask) < 0.5  # untrained
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(image), mask).backward()
        optimizer.step()
    with torch.no_grad():
        assert dice(model.eval()(image).argmax(1), mask) > 0.9


def test_invalid_options_are_config_errors():
    with pytest.raises(ConfigError, match="at least 2"):
        build("unet", 2, channels=(8,))
    with pytest.raises(ConfigError, match="deep_supervision"):
        build("unet", 2, channels=(8, 16), deep_supervision=True)
    with pytest.raises(ConfigError, match="divisible"):
        build("trans_unet", 2, embed_dim=30, heads=4)
    with pytest.raises(ConfigError, match="instance"):
        build("attention_unet", 2, norm="weight")
    with pytest.raises(ConfigError, match="invalid options"):
        build("unet", 2, gate=True)
