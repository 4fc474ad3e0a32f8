"""Batch augmentation and presets per modality: deterministic per seed, each operation does what it says, 2D and 3D."""

import time

import pytest
import torch

from medattn.config import RunConfig, default_augment, load_config, save_config
from medattn.data.augment import Augment
from medattn.data.phantom import save_medmnist_npz
from medattn.data.presets import PRESETS, preset, resolve_augment
from medattn.engine.loaded import tta_flips
from medattn.errors import ConfigError


def _batch(dims):
    torch.manual_seed(0)
    return torch.randn(6, 1, *([12] * dims))


@pytest.mark.parametrize("dims", [2, 3])
def test_deterministic_for_a_seed_and_shape_kept(dims):
    specs = [{"name": "flip"}, {"name": "affine"}, {"name": "noise"}, {"name": "intensity"}]
    x = _batch(dims)
    a = Augment(specs, spatial_dims=dims, seed=3)(x)
    b = Augment(specs, spatial_dims=dims, seed=3)(x)
    c = Augment(specs, spatial_dims=dims, seed=4)(x)
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_flip_with_probability_one_flips_the_chosen_axis():
    x = _batch(2)
    out = Augment([{"name": "flip", "prob": 1.0, "axes": [-1]}], spatial_dims=2, seed=0)(x)
    assert torch.equal(out, x.flip(-1))


@pytest.mark.parametrize("dims", [2, 3])
def test_affine_with_zero_ranges_is_identity(dims):
    x = _batch(dims)
    spec = {"name": "affine", "prob": 1.0, "rotate_deg": 0.0, "scale": 0.0, "translate": 0.0}
    out = Augment([spec], spatial_dims=dims, seed=0)(x)
    assert torch.allclose(out, x, atol=1e-5)


def test_affine_rotation_moves_pixels_but_keeps_the_range():
    x = _batch(2)
    out = Augment([{"name": "affine", "prob": 1.0, "rotate_deg": 30.0}], spatial_dims=2, seed=0)(x)
    assert (out - x).abs().mean() > 0.1
    assert out.min() >= x.min() - 1e-5
    assert out.max() <= x.max() + 1e-5  # bilinear with border padding cannot overshoot


def test_probability_zero_changes_nothing():
    x = _batch(2)
    specs = [{"name": n, "prob": 0.0} for n in ("flip", "affine", "noise", "intensity", "speckle")]
    assert torch.allclose(Augment(specs, spatial_dims=2, seed=0)(x), x, atol=1e-6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "warp"}, "unknown operation"),
        ({"name": "flip", "probability": 0.5}, "unknown key"),
        ({"prob": 0.5}, "need a 'name'"),
        ({"name": "monai.NoSuchTransform"}, "not a MONAI array transform"),
    ],
)
def test_bad_specs_are_rejected(spec, message):
    with pytest.raises(ConfigError, match=message):
        Augment([spec], spatial_dims=2, seed=0)


def test_flip_axis_out_of_range():
    with pytest.raises(ConfigError, match="out of range"):
        Augment([{"name": "flip", "prob": 1.0, "axes": [-3]}], spatial_dims=2, seed=0)(_batch(2))


def test_monai_transform_by_name_runs_per_sample():
    spec = {"name": "monai.RandGaussianNoise", "prob": 1.0, "std": 0.5}
    x = _batch(2)
    out = Augment([spec], spatial_dims=2, seed=0)(x)
    assert out.shape == x.shape
    assert type(out) is torch.Tensor
    assert 0.3 < (out - x).std() < 0.7


# Presets per modality (data/presets.py) and what the augmentation pipeline does with MONAI transforms.


def _preset_batch(name, dims, n=8, size=12):
    torch.manual_seed(1)
    return torch.randn(n, 3 if name == "rgb" else 1, *([size] * dims))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_runs_deterministically_and_keeps_shape(name, dims):
    specs = preset(name, spatial_dims=dims)
    x = _preset_batch(name, dims)
    a = Augment(specs, spatial_dims=dims, seed=5)(x)
    b = Augment(specs, spatial_dims=dims, seed=5)(x)
    c = Augment(specs, spatial_dims=dims, seed=6)(x)
    assert a.shape == x.shape
    assert a.dtype == torch.float32
    assert type(a) is torch.Tensor
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    if name == "none":
        assert specs == []
        assert torch.equal(a, x)
    else:
        assert (a - x).abs().mean() > 0.05  # the images change
        assert not torch.equal(a, c)


def _top_bright(dims, n=64):
    x = torch.full((n, 1, *([16] * dims)), -1.5)
    x[..., :8, :] = 1.5  # the upper half (along the vertical axis, -2) is bright
    return x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", ["xray", "ultrasound"])
def test_xray_and_ultrasound_never_flip_vertically(name, dims):
    specs = preset(name, spatial_dims=dims)
    assert [s["axes"] for s in specs if s["name"] == "flip"] == [[-1]]  # left-right only
    out = Augment(specs, spatial_dims=dims, seed=0)(_top_bright(dims))
    top, bottom = out[..., :8, :], out[..., 8:, :]
    assert (top.flatten(1).mean(1) > bottom.flatten(1).mean(1)).all()


def test_rgb_preset_flips_every_axis():
    assert [s["axes"] for s in preset("rgb", spatial_dims=3) if s["name"] == "flip"] == [[-3, -2, -1]]
    out = Augment(preset("rgb", spatial_dims=2), spatial_dims=2, seed=0)(_top_bright(2))
    upside_down = out[..., :8, :].flatten(1).mean(1) < out[..., 8:, :].flatten(1).mean(1)
    assert 10 < upside_down.sum() < 54  # the check above can fail: rgb turns about half of them over


def _resolved(config, *, spatial_dims, modality="auto"):
    """The config as the classification task resolves it for data of these dims and modality."""
    from medattn.tasks import get_task
    from medattn.tasks.base import TaskData

    data = TaskData(source=None, spatial_dims=spatial_dims, in_channels=1, num_outputs=2, n_train=10, modality=modality)
    return get_task("classification").resolve(config, data, None)


def test_auto_follows_the_modality():
    for modality in ("xray", "ct", "mr", "ultrasound", "rgb"):
        assert resolve_augment("auto", spatial_dims=2, modality=modality) == preset(modality, spatial_dims=2)
    assert resolve_augment("auto", spatial_dims=3, modality="auto") == default_augment()
    assert resolve_augment("auto", spatial_dims=2, modality="minmax") == default_augment()
    from medattn.tasks import get_task
    from medattn.tasks.base import TaskData

    task = get_task("classification")
    config = RunConfig()
    config.data.augment = "auto"
    data = TaskData(source=None, spatial_dims=2, in_channels=1, num_outputs=2, n_train=100, modality="ultrasound")
    resolved = task.resolve(config, data, None)
    assert resolved.data.augment == preset("ultrasound", spatial_dims=2)
    assert config.data.augment == "auto"  # the original is left as it was
    config.data.modality = "ct"  # set in the config, it wins over the source's modality
    data.spatial_dims = 3
    assert task.resolve(config, data, None).data.augment == preset("ct", spatial_dims=3)


def test_default_stays_the_list_the_benchmarks_use():
    assert RunConfig().data.augment == default_augment() == preset("default", spatial_dims=2)
    explicit = [{"name": "noise", "prob": 1.0, "std": 0.2}]
    config = RunConfig()
    config.data.augment = explicit
    assert _resolved(config, spatial_dims=2, modality="mr").data.augment == explicit


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: {augment: mri}", r"unknown preset 'mri' \(did you mean mr\?\).*xray, ct, mr, ultrasound, rgb, auto"),
        ("data: {augment: cxr}", "unknown preset 'cxr'.*valid: none, default, xray"),
        ("data: {augment: 5}", "expected a preset name or a list"),
        ("data: {augment: [{name: warp}]}", "unknown operation 'warp'"),
    ],
)
def test_bad_augment_in_a_config_file_fails_clearly(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "bad.yaml")


def test_preset_name_round_trips_through_yaml(tmp_path):
    config = RunConfig()
    config.data.augment = "mr"
    save_config(config, tmp_path / "config.yaml")
    assert "augment: mr" in (tmp_path / "config.yaml").read_text()
    loaded = load_config(tmp_path / "config.yaml")
    assert loaded == config
    resolved = _resolved(loaded, spatial_dims=2)
    save_config(resolved, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml").data.augment == preset("mr", spatial_dims=2)


def test_tta_flips_resolve_a_preset_name():
    config = RunConfig()
    config.data.augment = "rgb"
    assert tta_flips(config, 2) == [-2, -1]
    assert tta_flips(config, 3) == [-3, -2, -1]
    config.data.augment = "ultrasound"
    assert tta_flips(config, 2) == [-1]
    config.data.augment = "none"
    assert tta_flips(config, 2) == [-1]


def test_cli_augment_auto_records_the_resolved_list(tmp_path):
    from typer.testing import CliRunner

    from medattn.cli import app

    data = tmp_path / "breastmnist_phantom.npz"  # a MedMNIST name: the source knows it is ultrasound
    save_medmnist_npz(data, n_train=64, n_val=32, n_test=8, spatial_dims=2, size=16, num_classes=2, seed=3)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model: {name: attn_resnet, options: {widths: [8, 8, 8]}}\ntrain: {batch_size: 32, threads: 1}\n")
    args = ["train", "--data", str(data), "--config", str(tiny), "--epochs", "1"]
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--augment", "cxr"])
    assert isinstance(bad.exception, ConfigError)
    assert "unknown preset 'cxr'" in str(bad.exception)
    assert not (tmp_path / "bad").exists()  # refused before any run directory is made
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run"), "--augment", "auto", "--json"])
    assert result.exit_code == 0, result.output
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.data.augment == preset("ultrasound", spatial_dims=2)


@pytest.mark.parametrize("name", ["xray", "ct", "mr", "ultrasound", "rgb"])
def test_a_preset_costs_little_per_batch(name):
    x = _preset_batch(name, 2, n=64, size=28)
    augment = Augment(preset(name, spatial_dims=2), spatial_dims=2, seed=0)
    augment(x[:2])  # first call pays for lazy imports
    start = time.perf_counter()
    augment(x)
    assert time.perf_counter() - start < 2.0  # a loose sanity bound (about 10 ms here), not a benchmark


def test_monai_transforms_see_the_darkest_value_as_zero():
    x = torch.full((4, 1, 16, 16), -1.0)  # standardised background below the mean
    x[:, :, 4:12, 4:12] = 2.0
    spec = {"name": "monai.RandBiasField", "prob": 1.0, "coeff_range": [0.3, 0.5]}
    out = Augment([spec], spatial_dims=2, seed=0)(x)
    assert torch.allclose(out[:, :, :4], x[:, :, :4])  # a multiplicative field leaves the background as it was
    assert not torch.allclose(out[:, :, 4:12, 4:12], x[:, :, 4:12, 4:12])


def test_monai_prob_is_drawn_per_sample():
    x = _batch(2)
    spec = {"name": "monai.RandGaussianNoise", "std": 0.5}
    untouched = Augment([{**spec, "prob": 0.0}], spatial_dims=2, seed=0)(x)
    assert torch.equal(untouched, x)
    half = Augment([{**spec, "prob": 0.5}], spatial_dims=2, seed=0)(_batch(2).repeat(10, 1, 1, 1))
    changed = (half != _batch(2).repeat(10, 1, 1, 1)).flatten(1).any(1)
    assert 10 < changed.sum() < 50


def test_speckle_is_multiplicative_about_the_darkest_value():
    x = torch.full((4, 1, 16, 16), -1.0)
    x[:, :, 8:] = 3.0
    out = Augment([{"name": "speckle", "prob": 1.0, "std": 0.2}], spatial_dims=2, seed=0)(x)
    assert torch.equal(out[:, :, :8], x[:, :, :8])  # no echo stays no echo
    assert 0.5 < (out[:, :, 8:] - 3.0).std() < 1.1  # 0.2 x (3 - -1)


def test_shape_changing_monai_transform_is_refused():
    spec = {"name": "monai.RandSpatialCrop", "roi_size": [6, 6], "random_size": False}
    with pytest.raises(ConfigError, match="keep the shape"):
        Augment([spec], spatial_dims=2, seed=0)(_batch(2))


def test_bad_monai_options_name_the_transform():
    with pytest.raises(ConfigError, match="monai.RandGibbsNoise"):
        Augment([{"name": "monai.RandGibbsNoise", "alpha": [0.0, 2.0]}], spatial_dims=2, seed=0)
