"""Memory known before training starts: the budget, the estimate against measured peak RSS on real data, and a
small machine (MEDATTN_MEMORY_LIMIT) halving an automatic batch and refusing a batch the user gave."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medattn.config import RunConfig
from medattn.data.phantom import save_medmnist_npz
from medattn.engine import train_memory
from medattn.engine.memory import ENV, budget, human, parse_bytes, rss
from medattn.engine.train_memory import TrainingEstimate, fit_batch
from medattn.engine.trainer import fit
from medattn.errors import ConfigError, MemoryBudgetError
from medattn.runs import prepare_run_dir

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"
MIB = 1024**2


def test_parse_bytes_and_a_bad_limit_names_the_variable(monkeypatch):
    assert parse_bytes("4G") == 4 * 1024**3
    assert parse_bytes("512m") == 512 * MIB
    assert parse_bytes("1.5GiB") == int(1.5 * 1024**3)
    assert parse_bytes("1000") == 1000
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(ConfigError, match=ENV):
        budget()


def test_the_limit_counts_what_the_process_already_holds(monkeypatch):
    monkeypatch.setenv(ENV, str(rss() + 100 * MIB))
    have = budget()
    assert 99 * MIB < have.available <= 100 * MIB
    assert ENV in have.source


def test_an_automatic_batch_is_halved_and_a_given_one_refused(monkeypatch):
    estimate = TrainingEstimate(held=0, data=0, state=0, per_item=10 * MIB)
    monkeypatch.setenv(ENV, str(rss() + estimate.need(8) + MIB))
    assert fit_batch(estimate, 8, user_given=True) == (8, None)
    batch, note = fit_batch(estimate, 64, user_given=False)
    assert batch == 8
    assert "automatic batch 64" in note
    assert "training with batch 8" in note
    refused = r"batch 64 .*available \(MEDATTN_MEMORY_LIMIT.*--batch-size 8 or smaller"
    with pytest.raises(MemoryBudgetError, match=refused):
        fit_batch(estimate, 64, user_given=True)
    monkeypatch.setenv(ENV, str(rss() + estimate.need(1) - MIB))
    with pytest.raises(MemoryBudgetError, match="a batch of 1 does not fit either"):
        fit_batch(estimate, 64, user_given=False)


def _small_machine(monkeypatch, fits: int) -> None:
    """Set MEDATTN_MEMORY_LIMIT, once the estimate is known, so that a batch of `fits` fits and twice it does not."""
    measure = train_memory.estimate_training

    def estimate_then_limit(*args, **kwargs):
        estimate = measure(*args, **kwargs)
        gap = estimate.need(2 * fits) - estimate.need(fits)
        monkeypatch.setenv(ENV, str(rss() + estimate.need(fits) + gap // 2))
        return estimate

    monkeypatch.setattr(train_memory, "estimate_training", estimate_then_limit)


def _phantom(tmp_path: Path, batch: int | None) -> RunConfig:
    save_medmnist_npz(tmp_path / "p.npz", n_train=64, n_val=8, n_test=8, spatial_dims=2, size=32, num_classes=2)
    config = RunConfig()
    config.data.path = str(tmp_path / "p.npz")
    config.model.options = {"widths": [8, 16, 16]}
    config.train.epochs, config.train.threads, config.train.batch_size = 1, 1, batch
    return config


def test_a_small_machine_halves_the_automatic_batch_and_records_it(tmp_path, monkeypatch):
    _small_machine(monkeypatch, fits=8)
    run = prepare_run_dir(tmp_path / "run", resume=False, force=False)
    result = fit(_phantom(tmp_path, batch=None), run, quiet=True)
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["batch_size"] == 8
    notes = json.loads((run / "model.json").read_text())["training_data"]["notes"]
    assert any("automatic batch 64" in n and "training with batch 8" in n for n in notes), notes
    assert any("batch 8" in n for n in result["notes"])


def test_a_small_machine_refuses_a_batch_the_user_gave(tmp_path, monkeypatch):
    _small_machine(monkeypatch, fits=8)
    run = prepare_run_dir(tmp_path / "run", resume=False, force=False)
    with pytest.raises(MemoryBudgetError, match=r"training with batch 64 .*pass --batch-size 8 or smaller"):
        fit(_phantom(tmp_path, batch=64), run, quiet=True)
    assert not (run / "model.json").exists()


@pytest.mark.parametrize("factor", [1.5])
def test_estimates_bound_the_measured_peak_rss_on_real_hippocampus(shared_data, tmp_path, factor):
    """Training (4 real cases, one epoch) and predicting one real volume, each in its own process: the estimated
    peak is at least the measured peak RSS and at most `factor` times it."""
    image = sorted((shared_data / "msd_hippocampus" / "imagesTr").glob("*.nii.gz"))[0]
    for case, extra in (("train", ["--cases", "5"]), ("predict", ["--image", str(image)])):
        command = [sys.executable, str(BENCHMARK), "--child", case, "--work", str(tmp_path), *extra]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        row = json.loads(done.stdout.strip().splitlines()[-1])
        estimated, measured = row["estimate"]["peak"], row["peak_rss"]
        assert measured <= estimated <= factor * measured, f"{case}: estimated {human(estimated)}, {human(measured)}"
