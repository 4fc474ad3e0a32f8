"""Translation's data layouts, degraded pairs, metrics (by hand and against scikit-image where present) and its
loss: the discriminator it owns learns, and its state survives a save and load."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from medattn.config import RunConfig
from medattn.data.degrade import degrade, parse_degrade
from medattn.errors import ConfigError, DataError
from medattn.tasks import task_for_data
from medattn.tasks.translate.data import read_pair
from medattn.tasks.translate.metrics import image_scores, summarise
from medattn.tasks.translate.sources import open_pairs


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _paired_folder(root, n=6, size=16):
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 255, (size, size), dtype=np.uint8)
        _png(root / "source" / f"case{i}.png", image)
        _png(root / "target" / f"case{i}.png", 255 - image)
    return root


def test_paired_folder_is_recognised_and_pairs_match_by_name(tmp_path):
    root = _paired_folder(tmp_path / "pairs")
    assert task_for_data(root).name == "translation"
    source = open_pairs(root)
    assert source.kind == "folder"
    assert len(source.splits["train"]) == 6
    x, y, _, _ = read_pair(source, source.splits["train"][2])
    assert x.shape == y.shape == (1, 16, 16)
    np.testing.assert_array_equal(y, 255 - x)
    (root / "target" / "case5.png").unlink()
    with pytest.raises(DataError, match="without a partner"):
        open_pairs(root)


def test_csv_with_several_source_channels_and_npz_with_splits(tmp_path):
    root = _paired_folder(tmp_path / "pairs")
    rows = ["source,target,patient_id,split"]
    rows += [f"source/case{i}.png;target/case{i}.png,target/case{i}.png,p{i % 3},train" for i in range(5)]
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    assert task_for_data(root / "pairs.csv").name == "translation"
    source = open_pairs(root / "pairs.csv")
    x, y, _, _ = read_pair(source, source.splits["train"][0])
    assert x.shape == (2, 16, 16)
    assert y.shape == (1, 16, 16)
    assert [p.patient_id for p in source.splits["train"]][:3] == ["p0", "p1", "p2"]

    split = np.array(["train"] * 8 + ["val"] * 2 + ["test"] * 2)
    np.savez(tmp_path / "pairs.npz", source=np.zeros((12, 2, 8, 8)), target=np.ones((12, 8, 8)), split=split)
    assert task_for_data(tmp_path / "pairs.npz").name == "translation"
    source = open_pairs(tmp_path / "pairs.npz")
    assert {k: len(v) for k, v in source.splits.items()} == {"train": 8, "val": 2, "test": 2}
    x, y, _, _ = read_pair(source, source.splits["test"][1])
    assert x.shape == (2, 8, 8)
    assert y.shape == (1, 8, 8)
    assert y.min() == 1
    np.savez(tmp_path / "bad.npz", source=np.zeros((4, 8, 8)), target=np.ones((4, 9, 9)))
    with pytest.raises(DataError, match="differ in shape"):
        open_pairs(tmp_path / "bad.npz")


def test_channels_of_one_set_become_source_and_target(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(4):
        _png(tmp_path / "set" / "images" / f"s{i}.png", rng.integers(0, 255, (12, 12, 3), dtype=np.uint8))
    source = open_pairs(tmp_path / "set", source_channels=[0, 2], target_channels=[1])
    pair = source.splits["train"][0]
    x, y, _, _ = read_pair(source, pair)
    rgb = np.asarray(Image.open(pair.source[0])).transpose(2, 0, 1)
    np.testing.assert_array_equal(x, rgb[[0, 2]])
    np.testing.assert_array_equal(y, rgb[[1]])
    wide = open_pairs(tmp_path / "set", source_channels=[0], target_channels=[5])
    with pytest.raises(DataError, match="3 channel"):
        read_pair(wide, wide.splits["train"][0])
    with pytest.raises(DataError, match="already paired"):
        open_pairs(_paired_folder(tmp_path / "pairs"), source_channels=[0], target_channels=[0])
    with pytest.raises(ConfigError, match="go together"):
        RunConfig.from_dict({"data": {"source_channels": [0]}})


def test_degraded_pairs():
    image = np.random.default_rng(2).uniform(0, 100, (1, 32, 32)).astype(np.float32)
    noisy = degrade(image, "noise=0.05", seed=3)
    assert abs(float((noisy - image).std()) - 0.05 * float(np.ptp(image))) < 0.5
    np.testing.assert_array_equal(noisy, degrade(image, "noise=0.05", seed=3))  # seeded: the same pairs again
    smooth = np.kron(np.arange(16, dtype=np.float32).reshape(1, 4, 4), np.ones((8, 8), np.float32))
    coarse = degrade(smooth, "downsample=2", seed=0)
    assert coarse.shape == smooth.shape
    np.testing.assert_allclose(coarse[:, 2:6, 2:6], smooth[:, 2:6, 2:6], atol=1e-5)  # flat blocks survive
    assert float(np.abs(degrade(image, "downsample=4", seed=0) - image).mean()) > 5  # fine detail does not
    for bad in ("blur=2", "downsample=1.5", "noise=-1"):
        with pytest.raises(ConfigError):
            parse_degrade(bad)


def test_metrics_by_hand_and_per_subject():
    truth = np.zeros((1, 32, 32))
    truth[:, 8:24, 8:24] = 100.0
    pred = truth + 10.0
    scores = image_scores(pred, truth, data_range=100.0)
    assert scores["mae"] == pytest.approx(10.0)
    assert scores["psnr"] == pytest.approx(10 * math.log10(100.0**2 / 100.0))  # MSE 100
    assert scores["psnr_foreground"] == pytest.approx(scores["psnr"])  # the same error inside
    same = image_scores(truth, truth, data_range=100.0)
    assert same["ssim"] == pytest.approx(1.0)
    assert same["ssim_foreground"] == pytest.approx(1.0)
    assert same["psnr"] == math.inf
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        structural_similarity = None
    if structural_similarity is not None:
        rng = np.random.default_rng(0)
        noisy = truth + rng.normal(0, 10, truth.shape)
        expected = structural_similarity(
            truth[0], noisy[0], data_range=100.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert image_scores(noisy, truth, data_range=100.0)["ssim"] == pytest.approx(expected, abs=2e-3)
    rows = [
        {k: v for k, v in zip(("psnr", "ssim", "mae"), r, strict=True)} for r in ([10, 1, 1], [20, 1, 3], [40, 1, 5])
    ]
    rows = [{**r, "psnr_foreground": r["psnr"], "ssim_foreground": 1.0} for r in rows]
    summary = summarise(rows, ["a", "a", "b"], ci=False)
    assert summary["psnr"] == pytest.approx((15 + 40) / 2)  # subject means first, then over subjects
    assert summary["mae"] == pytest.approx((2 + 5) / 2)
    assert summary["n"] == 3
    assert summary["n_subjects"] == 2


def _loss(name, patch=(32, 32)):
    from types import SimpleNamespace

    from medattn.tasks.translate.loss import TranslationLoss

    config = RunConfig(task="translation")
    config.train.loss = name
    data = SimpleNamespace(
        num_outputs=1, in_channels=2, spatial_dims=2, extra={"translation": SimpleNamespace(patch=list(patch))}
    )
    return TranslationLoss(config, data)


def test_the_loss_trains_its_discriminator_and_checkpoints_it():
    torch.manual_seed(0)
    loss = _loss("lsgan")
    before = {k: v.clone() for k, v in loss.discriminator.state_dict().items()}
    output = torch.randn(2, 1, 32, 32, requires_grad=True)
    target = torch.randn(2, 3, 32, 32)
    value = loss(None, output, target, torch.device("cpu"))
    value.backward()
    assert output.grad is not None
    assert output.grad.abs().sum() > 0
    after = loss.discriminator.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # one discriminator step was taken
    assert all(p.grad is None for p in loss.discriminator.parameters())  # the generator's backward leaves it be
    again = _loss("lsgan")
    again.load_state_dict(loss.state_dict())
    again._ready(torch.device("cpu"))
    assert all(
        torch.equal(a, b) for a, b in zip(again.discriminator.state_dict().values(), after.values(), strict=False)
    )
    assert again.optimizer.state_dict()["state"].keys() == loss.optimizer.state_dict()["state"].keys()
    plain = _loss("l1")
    assert plain.discriminator is None
    assert plain.state_dict() == {}
    assert float(plain(None, torch.zeros(1, 1, 8, 8), torch.ones(1, 3, 8, 8), "cpu")) == pytest.approx(1.0)


def test_small_patches_get_a_shallower_discriminator():
    from medattn.tasks.translate.loss import discriminator_layers

    assert discriminator_layers([64, 64], 3) == 3
    assert discriminator_layers([16, 16, 16], 3) == 2
    loss = _loss("hinge", patch=(16, 16))
    assert loss.discriminator(torch.zeros(1, 2, 16, 16), torch.zeros(1, 1, 16, 16)).shape[-1] >= 1


def test_targets_of_very_different_scales_are_noted(tmp_path):
    from medattn.tasks.translate.data import load_translation_data

    rng = np.random.default_rng(4)
    target = rng.uniform(0, 1, (12, 1, 16, 16)).astype(np.float32)
    target[::2] *= 10_000  # half the images stored on another scale
    np.savez(tmp_path / "mixed.npz", source=target, target=target, split=np.array(["train"] * 8 + ["val"] * 4))
    config = RunConfig(task="translation")
    config.data.path = str(tmp_path / "mixed.npz")
    source = open_pairs(config.data.path)
    loaded = load_translation_data(config, source)
    assert any("different intensity scales" in note for note in loaded.notes)
