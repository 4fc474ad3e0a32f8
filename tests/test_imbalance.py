"""Imbalance tools and decision thresholds: balanced sampling, thresholds tuned on validation, TTA."""

import json

import numpy as np
import pytest
import torch

from medattn.config import RunConfig, parse_threshold
from medattn.data.phantom import save_medmnist_npz
from medattn.engine.loaded import load_run, tta_flips
from medattn.engine.trainer import fit
from medattn.errors import ConfigError
from medattn.runs import prepare_run_dir
from medattn.tasks.classify.predict import predict_probs
from medattn.tasks.classify.report import evaluate_run
from medattn.tasks.classify.train_set import ClassTrainSet


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0.5", ("fixed", 0.5)), ("0.3", ("fixed", 0.3)), ("sensitivity=0.9", ("sensitivity", 0.9))],
)
def test_threshold_rules_parse(text, parsed):
    assert parse_threshold(text) == parsed


@pytest.mark.parametrize("text", ["1.5", "youdn", "sensitivity=2", ""])
def test_bad_threshold_rules_are_refused(text):
    with pytest.raises(ConfigError, match="train.threshold"):
        parse_threshold(text)


def test_balanced_sampler_draws_classes_equally():
    labels = torch.tensor([0] * 90 + [1] * 10)
    images = ClassTrainSet(torch.zeros(100, 1, 4, 4), labels, num_classes=2, seed=0)
    config = RunConfig()
    config.train.sampler = "balanced"
    images.configure(config)
    order = images.order(torch.Generator().manual_seed(0))
    share = float((labels[order] == 1).float().mean())
    assert len(order) == 100
    assert 0.35 < share < 0.65  # a plain shuffle gives exactly 0.10
    again = images.order(torch.Generator().manual_seed(0))
    assert torch.equal(order, again)
    images.sampler = "shuffle"
    shuffle = images.order(torch.Generator().manual_seed(0))
    assert sorted(shuffle.tolist()) == list(range(100))


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("imbalance")
    data = root / "phantom.npz"
    save_medmnist_npz(data, n_train=120, n_val=60, n_test=60, spatial_dims=2, size=20, num_classes=2, seed=5)
    config = RunConfig()
    config.data.path = str(data)
    config.model.options = {"widths": [8, 16, 32]}
    config.train.epochs = 3
    config.train.batch_size = 32
    config.train.threads = 1
    config.train.sampler = "balanced"
    config.train.threshold = "sensitivity=0.9"
    run = prepare_run_dir(root / "run", resume=False, force=False)
    fit(config, run)
    return run


def test_threshold_tuned_on_validation_is_stored_and_used(tuned_run):
    card = json.loads((tuned_run / "model.json").read_text())
    assert 0.0 < card["threshold"] < 1.0
    assert card["threshold_rule"] == "sensitivity >= 0.9 on validation"
    loaded = load_run(tuned_run)
    from medattn.data.tensors import prepare
    from medattn.tasks.classify.sources import open_source

    val = prepare(open_source(loaded.config.data.path), "val", loaded.intensity, loaded.size)
    scores = predict_probs(loaded.model, val.x, labels="binary")[:, 1]
    positives = val.y.numpy() == 1
    assert (scores[positives] > card["threshold"]).mean() >= 0.9
    metrics = evaluate_run(tuned_run, split="test")
    assert metrics["threshold"] == pytest.approx(card["threshold"])


def test_tta_averages_the_flipped_views(tuned_run):
    loaded = load_run(tuned_run)
    x = torch.randn(4, 1, 20, 20)
    plain = predict_probs(loaded.model, x, labels="binary")
    flipped = predict_probs(loaded.model, x.flip(-1), labels="binary")
    both = predict_probs(loaded.model, x, labels="binary", flips=[-1])
    np.testing.assert_allclose(both, (plain + flipped) / 2, atol=1e-6)
    metrics = evaluate_run(tuned_run, split="test", tta=True)
    assert metrics["tta"] == [-1]
    recorded = json.loads((tuned_run / "metrics.json").read_text())
    assert {"test", "test+tta"} <= set(recorded)


def test_tta_flips_follow_the_training_flips():
    config = RunConfig()
    assert tta_flips(config, 2) == [-1]  # the default augmentation flips left-right only
    config.data.augment = [{"name": "flip", "prob": 0.5}]
    assert tta_flips(config, 3) == [-3, -2, -1]
    config.data.augment = [{"name": "flip", "axes": [0]}]
    assert tta_flips(config, 2) == [-2]
    config.data.augment = []
    assert tta_flips(config, 2) == [-1]
