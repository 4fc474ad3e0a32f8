"""Mixup and CutMix: what is mixed, by how much, and that it is deterministic."""

import pytest
import torch

from medattn.config import RunConfig
from medattn.errors import ConfigError
from medattn.tasks.classify.mixing import Mixer


def _batch():
    torch.manual_seed(0)
    return torch.rand(8, 1, 16, 16)


def test_mixup_is_a_convex_blend_with_the_partner():
    x = _batch()
    mixed, partner, lam = Mixer(mixup=0.4, cutmix=0.0, generator=torch.Generator().manual_seed(1))(x)
    assert 0.0 <= lam <= 1.0
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[partner])


@pytest.mark.parametrize("dims", [2, 3])
def test_cutmix_pastes_one_box_and_reports_the_kept_share(dims):
    x = torch.rand(6, 1, *([12] * dims))
    mixed, partner, kept = Mixer(mixup=0.0, cutmix=1.0, generator=torch.Generator().manual_seed(3))(x)
    from_partner = (mixed == x[partner]) & (mixed != x)
    share = from_partner[0].float().mean().item()
    assert share == pytest.approx(1 - kept, abs=1e-6)
    assert ((mixed == x) | (mixed == x[partner])).all()


def test_same_seed_same_mix():
    x = _batch()
    a = Mixer(mixup=0.4, cutmix=1.0, generator=torch.Generator().manual_seed(5))(x)
    b = Mixer(mixup=0.4, cutmix=1.0, generator=torch.Generator().manual_seed(5))(x)
    assert torch.equal(a[0], b[0])
    assert a[2] == b[2]


def test_loss_is_blended_by_lam():
    from medattn.tasks.classify.loss import MixedLoss

    loss_fn = torch.nn.CrossEntropyLoss()
    mixed = MixedLoss(loss_fn)
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    partner = torch.tensor([1, 0, 3, 2])
    expected = 0.3 * loss_fn(logits, y) + 0.7 * loss_fn(logits, y[partner])
    device = torch.device("cpu")
    assert mixed(None, logits, (y, partner, 0.3), device) == pytest.approx(float(expected))
    assert mixed(None, logits, (y, None, 1.0), device) == pytest.approx(float(loss_fn(logits, y)))


def test_negative_alpha_is_refused():
    raw = RunConfig().to_dict()
    raw["train"]["mixup"] = -1.0
    with pytest.raises(ConfigError, match="mixup"):
        RunConfig.from_dict(raw)
