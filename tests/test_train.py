"""The training engine: the run directory, determinism, resume after a kill, losses, real-data learning."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medattn.config import RunConfig
from medattn.data.phantom import save_medmnist_npz
from medattn.engine.trainer import fit
from medattn.errors import RunDirError
from medattn.runs import prepare_run_dir
from medattn.tasks.classify.loss import build_loss, class_weights

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def phantom_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("phantom") / "phantom.npz"
    save_medmnist_npz(path, n_train=160, n_val=60, n_test=60, spatial_dims=2, size=24, num_classes=2, seed=1)
    return path


def _config(path, **train):
    config = RunConfig()
    config.data.path = str(path)
    config.model.options = {"widths": [8, 16, 32]}
    config.train.epochs = train.pop("epochs", 2)
    config.train.batch_size = 32
    config.train.threads = 1  # the same thread count in every run keeps float sums identical
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def test_run_directory_holds_what_design_promises(tmp_path, phantom_npz):
    run = prepare_run_dir(tmp_path / "run", resume=False, force=False)
    result = fit(_config(phantom_npz), run)
    for name in ("config.yaml", "model.safetensors", "model.json", "history.csv", "checkpoint/last.pt"):
        assert (run / name).is_file(), name
    card = json.loads((run / "model.json").read_text())
    assert card["task"] == "classification"
    assert card["labels"] == "binary"
    assert card["model"]["name"] == "attn_resnet"
    assert card["input"]["channels"] == 1
    assert card["input"]["size"] == [24, 24]
    assert set(card["input"]["intensity"]) >= {"mode", "mean", "std"}
    assert card["training_data"]["splits"] == {"train": 160, "val": 60, "test": 60}
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert 1 <= result["best_epoch"] <= 2
    weights = load_file(run / "model.safetensors")
    assert any(k.endswith("weight") for k in weights)


def test_same_seed_same_weights(tmp_path, phantom_npz):
    runs = []
    for name in ("a", "b"):
        run = prepare_run_dir(tmp_path / name, resume=False, force=False)
        fit(_config(phantom_npz, seed=7), run)
        runs.append(load_file(run / "model.safetensors"))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_existing_run_directory_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text("precious")
    with pytest.raises(RunDirError, match="--resume"):
        prepare_run_dir(run, resume=False, force=False)
    assert (run / "model.json").read_text() == "precious"
    with pytest.raises(RunDirError, match="no checkpoint"):
        prepare_run_dir(run, resume=True, force=False)


def _history(run):
    return [(r["epoch"], r["train_loss"], r["val_loss"]) for r in csv.DictReader((run / "history.csv").open())]


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, phantom_npz):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "medattn",
        "train",
        "--data",
        str(phantom_npz),
        "--epochs",
        "6",
        "--seed",
        "3",
        "--batch-size",
        "16",
    ]
    full = tmp_path / "full"
    subprocess.run([*command, "--out", str(full)], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*command, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(_history(killed) if (killed / "history.csv").exists() else []) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.json").exists(), "the run finished before it could be killed"
    done_before = len(_history(killed))
    subprocess.run([*command[:4], "--out", str(killed), "--resume"], check=True, env=env, capture_output=True)
    assert 2 <= done_before < 6
    assert _history(killed) == _history(full)
    a, b = load_file(full / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_class_weights_favour_the_rare_class():
    weights = class_weights([90, 10])
    assert weights[1] / weights[0] == pytest.approx(9.0)
    assert weights.mean() == pytest.approx(1.0)


def test_focal_loss_down_weights_easy_examples():
    focal = build_loss(task="binary", loss="focal", counts=[5, 5], n=10, gamma=2.0)
    ce = build_loss(task="binary", loss="ce", counts=[5, 5], n=10)
    easy = torch.tensor([[6.0, -6.0]])
    hard = torch.tensor([[0.2, -0.2]])
    target = torch.tensor([0])
    assert focal(easy, target) < 1e-3 * ce(easy, target)
    assert focal(hard, target) > 0.1 * ce(hard, target)
    gamma_zero = build_loss(task="binary", loss="focal", counts=[5, 5], n=10, gamma=0.0)
    assert gamma_zero(hard, target) == pytest.approx(float(ce(hard, target)))


def test_weighted_multilabel_loss_uses_positive_weights():
    loss = build_loss(task="multilabel", loss="weighted_ce", counts=[10, 90], n=100)
    logits, target = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    plain = build_loss(task="multilabel", loss="ce", counts=[10, 90], n=100)
    assert loss(logits, target) > plain(logits, target)


def test_3d_training_runs(tmp_path):
    path = tmp_path / "phantom3d.npz"
    save_medmnist_npz(path, n_train=24, n_val=12, n_test=12, spatial_dims=3, size=12, num_classes=2, seed=0)
    run = prepare_run_dir(tmp_path / "run3d", resume=False, force=False)
    config = _config(path, epochs=1)
    fit(config, run)
    card = json.loads((run / "model.json").read_text())
    assert card["model"]["spatial_dims"] == 3
    assert card["input"]["size"] == [12, 12, 12]


@pytest.mark.slow
def test_learns_breastmnist(tmp_path):
    """A short real run on the official BreastMNIST split clears a floor well above chance."""
    path = SHARED / "medmnist" / "breastmnist.npz"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    from medattn.tasks.classify.report import evaluate_run

    config = RunConfig()
    config.data.path = str(path)
    config.train.epochs = 12
    run = prepare_run_dir(tmp_path / "breast", resume=False, force=False)
    fit(config, run)
    metrics = evaluate_run(run, split="test")
    assert metrics["n"] == 156
    assert metrics["auc"] > 0.80
    assert metrics["acc"] > 0.75
    assert np.isfinite(metrics["ece"])


def test_trains_from_a_class_folder_of_png_files(tmp_path):
    from PIL import Image

    from medattn.data.phantom import make_classification_set

    images, labels = make_classification_set(n=40, spatial_dims=2, size=20, seed=4)
    for split, index in (("train", range(0, 24)), ("val", range(24, 32)), ("test", range(32, 40))):
        for i in index:
            folder = tmp_path / "data" / split / ("lesion" if labels[i] else "clear")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((images[i, 0] * 255).astype(np.uint8)).save(folder / f"{i}.png")
    config = _config(tmp_path / "data", epochs=1)
    config.data.size = [16, 16]
    run = prepare_run_dir(tmp_path / "run", resume=False, force=False)
    fit(config, run)
    card = json.loads((run / "model.json").read_text())
    assert card["class_names"] == ["clear", "lesion"]
    assert card["training_data"]["kind"] == "folder"
    assert card["input"]["size"] == [16, 16]
    assert card["input"]["source_spacing_mm"] == [1.0, 1.0]
    assert card["input"]["intensity"]["mode"] == "scale"


@pytest.mark.parametrize("name", ["onecycle", "cosine"])
def test_schedules_survive_runs_of_a_few_steps(name):
    import torch

    from medattn.engine.trainer import build_schedule

    for total in range(1, 30):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        schedule = build_schedule(optimizer, name=name, lr=0.1, total_steps=total)
        rates = []
        for _ in range(total):
            optimizer.step()
            schedule.step()
            rates.append(optimizer.param_groups[0]["lr"])
        assert all(0 <= r <= 0.1 + 1e-9 for r in rates), (total, rates)
        assert max(rates) > rates[-1] or total < 3, (total, rates)  # the rate decays towards the end
