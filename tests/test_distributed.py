"""Training with several processes (torchrun, DDP over gloo on the CPU) against one process; the epoch shards."""

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

from medattn.config import load_config
from medattn.engine import distributed
from medattn.engine.device import use_threads
from medattn.engine.trainer import fit
from medattn.errors import ConfigError
from medattn.runs import prepare_run_dir

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
RUN_FILES = ["checkpoint", "config.yaml", "history.csv", "model.json", "model.safetensors"]


def _squares_npz(path: Path, *, contrast: float = 45.0) -> Path:
    """MedMNIST layout, 24 x 24: class 1 has a faint 6 x 6 square somewhere in the noise, class 0 has none."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 160), ("val", 60), ("test", 20)):
        labels = np.arange(n) % 2
        images = rng.uniform(0, 100, size=(n, 24, 24))
        for i in np.flatnonzero(labels):
            row, col = rng.integers(2, 16, size=2)
            images[i, row : row + 6, col : col + 6] += contrast
        arrays[f"{split}_images"] = images.round().astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None].astype(np.uint8)
    np.savez(path, **arrays)
    return path


# Group norm and no augmentation: nothing in a step depends on how the batch is split, so two processes of 16
# images compute the gradient of one process's 32 (the mean of two equal halves' means) and take the same steps.
EXACT = """\
model: {name: cnn, options: {widths: [8, 16], norm: group}}
data: {augment: []}
train: {epochs: 3, batch_size: 32, lr: 0.01, threads: 1}
"""


def _torchrun(*args, cwd: Path, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "medattn", "train", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=cwd, env=ENV, start_new_session=True, **popen)
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def _history(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "history.csv").open())) if (run / "history.csv").is_file() else []


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = _squares_npz(root / "squares.npz")
    (root / "exact.yaml").write_text(EXACT)
    result = _torchrun("--data", data, "--config", "exact.yaml", "--out", "ddp", "--device", "cpu", "--json", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def test_two_processes_train_like_one(two_process_run, tmp_path):
    root, result = two_process_run
    reported = json.loads(result.stdout)  # rank 0 alone prints: exactly one JSON object on stdout
    assert reported["epochs_run"] == 3

    # one run directory, written once; the other rank wrote nothing anywhere
    assert sorted(p.name for p in root.iterdir()) == ["ddp", "exact.yaml", "squares.npz"]
    assert sorted(p.name for p in (root / "ddp").iterdir()) == RUN_FILES
    card = json.loads((root / "ddp" / "model.json").read_text())
    assert "trained by 2 processes, 16 images each per step" in card["training_data"]["notes"]

    config = load_config(root / "exact.yaml")
    config.data.path = str(root / "squares.npz")
    config.train.device = "cpu"
    single = prepare_run_dir(tmp_path / "single", resume=False, force=False)
    fit(config, single)

    # the same number of optimizer steps: 3 epochs of 160 / 32 = 5 global batches
    steps = [torch.load(r / "checkpoint" / "last.pt", weights_only=True)["scheduler"] for r in (root / "ddp", single)]
    assert steps[0]["last_epoch"] == steps[1]["last_epoch"] == 15
    ddp_rows, single_rows = _history(root / "ddp"), _history(single)
    assert [r["epoch"] for r in ddp_rows] == [r["epoch"] for r in single_rows] == ["0", "1", "2"]

    # Only the order of float additions differs (gloo adds the two halves' gradients; one process sums 32 images
    # in one reduction), about 1e-7 relative per step; 15 Adam steps leave the weights within 1e-5 (seen: 5e-8).
    a, b = load_file(root / "ddp" / "model.safetensors"), load_file(single / "model.safetensors")
    assert a.keys() == b.keys()
    assert not any(k.startswith("module.") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)
    for left, right in zip(ddp_rows, single_rows, strict=True):
        for column in ("lr", "train_loss", "val_loss", "val_auc"):
            assert float(left[column]) == pytest.approx(float(right[column]), rel=1e-4, abs=1e-4), column
    assert float(ddp_rows[-1]["val_auc"]) > 0.8  # and it learned something: the squares are findable


def test_rank_zero_refusal_stops_every_rank(two_process_run):
    root, _ = two_process_run
    result = _torchrun("--data", "squares.npz", "--config", "exact.yaml", "--out", "ddp", "--device", "cpu", cwd=root)
    assert result.returncode != 0
    assert result.stderr.count("already exists; pass --resume") == 2  # rank 0's error, reported by both ranks
    assert (root / "ddp" / "model.json").is_file()  # untouched


@pytest.mark.slow
def test_two_process_run_resumes_after_a_kill(tmp_path):
    """Batch norm, default augmentation and flips: a killed run resumed by torchrun ends where an unbroken one does."""
    data = _squares_npz(tmp_path / "squares.npz")
    (tmp_path / "bn.yaml").write_text(
        "model: {name: attn_resnet, options: {widths: [8, 16, 32]}}\ntrain: {epochs: 8, batch_size: 32, threads: 1}\n"
    )
    args = ["--data", data, "--config", "bn.yaml", "--device", "cpu"]
    full = _torchrun(*args, "--out", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]

    process = _torchrun(*args, "--out", "killed", cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(_history(tmp_path / "killed")) < 2:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
    process.wait()
    done_before = len(_history(tmp_path / "killed"))
    assert not (tmp_path / "killed" / "model.json").exists(), "the run finished before it could be killed"
    assert 2 <= done_before < 8

    resumed = _torchrun("--out", "killed", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    columns = ("epoch", "lr", "train_loss", "val_loss", "val_auc")
    assert [[r[c] for c in columns] for r in _history(tmp_path / "killed")] == [
        [r[c] for c in columns] for r in _history(tmp_path / "full")
    ]
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "killed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _old_batches(order, batch):
    """The single-process loop before sharding existed."""
    n = len(order)
    return [order[s : s + batch] for s in range(0, n, batch) if len(order[s : s + batch]) >= 2]


@pytest.mark.parametrize(("n", "batch"), [(160, 32), (161, 32), (163, 32), (7, 64), (5, 2)])
def test_one_process_batches_are_unchanged(n, batch):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    expected = _old_batches(order, min(batch, n))
    got = distributed.rank_batches(order, batch=min(batch, n), rank=0, world=1)
    assert len(got) == len(expected)
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize(("n", "batch", "world"), [(160, 32, 2), (161, 32, 2), (100, 24, 3), (37, 8, 4), (9, 8, 4)])
def test_rank_shards_cover_the_epoch_once_with_equal_batch_counts(n, batch, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(7))
    shards = [distributed.rank_batches(order, batch=batch, rank=r, world=world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # DDP steps together: every rank the same number of batches
    for step in range(len(shards[0])):
        assert len({len(s[step]) for s in shards}) == 1  # and the same batch size at each step
        assert all(len(s[step]) <= batch // world for s in shards)
    seen = torch.cat([torch.cat(s) for s in shards]).tolist()
    pad = -n % world
    counts = np.bincount(seen, minlength=n)
    dropped = n + pad - len(seen)  # a last step of one image per rank is dropped, as in one process
    assert dropped in (0, world)
    if dropped == 0:
        assert counts.min() == 1  # every image of the epoch is seen
        duplicated = set(np.flatnonzero(counts == 2).tolist())
        assert duplicated == set(order[:pad].tolist())  # and only the wrap-round padding twice
    assert counts.max() <= 2


def test_step_k_over_all_ranks_is_step_k_of_one_process():
    order = torch.randperm(160, generator=torch.Generator().manual_seed(3))
    single = distributed.rank_batches(order, batch=32, rank=0, world=1)
    shards = [distributed.rank_batches(order, batch=32, rank=r, world=4) for r in range(4)]
    assert len(shards[0]) == len(single) == 5
    for step, batch in enumerate(single):
        together = torch.cat([s[step] for s in shards])
        assert sorted(together.tolist()) == sorted(batch.tolist())


def test_too_small_a_batch_for_the_processes_is_refused():
    with pytest.raises(ConfigError, match="at least 8"):
        distributed.rank_batches(torch.arange(100), batch=6, rank=0, world=4)


@pytest.fixture
def as_rank(monkeypatch):
    """Pretend to be rank `r` of two on one machine (environment only: no process group is started)."""

    def become(r: int) -> None:
        for name, value in (("WORLD_SIZE", 2), ("RANK", r), ("LOCAL_RANK", r), ("LOCAL_WORLD_SIZE", 2)):
            monkeypatch.setenv(name, str(value))

    return become


def test_ranks_draw_their_own_augmentation_but_reproducibly(as_rank):
    saved = torch.get_rng_state()
    draws = {}
    for r in (0, 1, 0):
        as_rank(r)
        generator = torch.Generator().manual_seed(123)
        distributed.reseed_rank_streams(seed=5, epoch=2, generators=[generator])
        draws.setdefault(r, []).append((torch.rand(4, generator=generator), torch.rand(2)))
    torch.set_rng_state(saved)
    (first, again), (other,) = draws[0], draws[1]
    assert torch.equal(first[0], again[0])  # a function of (seed, epoch, rank): the generator's draws
    assert torch.equal(first[1], again[1])  # and dropout's (the global generator)
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[1], other[1])


def test_processes_on_one_machine_share_its_cores(as_rank, monkeypatch):
    as_rank(1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        assert use_threads(0) == max(1, cores // 2)
        assert use_threads(3) == 3  # an explicit train.threads wins
    finally:
        torch.set_num_threads(before)


def test_without_torchrun_everything_is_a_no_op(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert not distributed.active()
    assert distributed.all_reduce([1.5, 2.0]) == [1.5, 2.0]
    assert distributed.broadcast({"stop": True}) == {"stop": True}
    assert distributed.on_main(lambda: 42) == 42
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.batch_note(32) is None


def test_segmentation_trains_under_torchrun_like_every_task(tmp_path):
    """The one engine gives segmentation DDP too: patches drawn per rank, rank 0 validating and writing."""
    from PIL import Image

    from medattn.data.phantom import make_segmentation_set

    images, masks = make_segmentation_set(n=24, spatial_dims=2, size=32, seed=1, label_map={"lesion": 1})
    for folder in ("images", "masks"):
        (tmp_path / "seg" / folder).mkdir(parents=True)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        Image.fromarray((image[0] * 255).astype(np.uint8)).save(tmp_path / "seg" / "images" / f"c{i}.png")
        Image.fromarray(mask).save(tmp_path / "seg" / "masks" / f"c{i}.png")
    (tmp_path / "tiny.yaml").write_text("model: {name: unet, options: {channels: [8, 16]}}\ntrain: {threads: 1}\n")
    args = ("--data", "seg", "--config", "tiny.yaml", "--epochs", "2", "--batch-size", "8", "--out", "run")
    result = _torchrun(*args, "--device", "cpu", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads(result.stdout)
    assert reported["task"] == "segmentation"
    assert reported["epochs_run"] == 2
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert "trained by 2 processes, 4 images each per step" in card["training_data"]["notes"]
    assert [r["epoch"] for r in _history(tmp_path / "run")] == ["0", "1"]
