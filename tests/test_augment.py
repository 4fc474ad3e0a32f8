"""Batch augmentation: deterministic per seed, each operation does what it says, 2D and 3D."""

import pytest
import torch

from medattn.data.augment import Augment
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
    specs = [{"name": n, "prob": 0.0} for n in ("flip", "affine", "noise", "intensity")]
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
