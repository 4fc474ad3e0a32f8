"""train.time_limit: the first epoch is timed, the run re-planned to the epochs that fit, its schedule still
annealing to its end; a resume keeps the plan."""

import csv
import json
import time

import pytest
import torch
import yaml

from medattn.config import RunConfig
from medattn.data.phantom import save_medmnist_npz
from medattn.engine.budget import TimeBudget, replanned_schedule
from medattn.engine.optim import build_schedule
from medattn.engine.trainer import fit
from medattn.errors import ConfigError
from medattn.runs import prepare_run_dir


def test_epochs_that_fit_and_the_overrun_check():
    budget = TimeBudget(10.0)  # 600 s
    assert budget.epochs_that_fit(100, 55.0) == 10
    assert budget.epochs_that_fit(4, 55.0) == 4  # never more than planned
    assert budget.epochs_that_fit(100, 900.0) == 1  # the epoch that ran counts
    now = time.perf_counter()
    assert TimeBudget(1.0, started=now - 35).one_more_overruns(1)  # 35 s done, 35 more would pass 60
    assert not TimeBudget(1.0, started=now - 10).one_more_overruns(1)
    assert TimeBudget(1.0, spent_before=45.0, started=now - 10).one_more_overruns(1)  # time before a resume counts


@pytest.mark.parametrize("name", ["onecycle", "cosine"])
def test_replanned_schedule_continues_and_anneals_to_the_new_end(name):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=1e-3)
    build_schedule(optimizer, name=name, lr=1e-3, total_steps=10 * 10)  # ten planned epochs of 10 steps
    for _ in range(10):
        optimizer.step()
    scheduler = replanned_schedule(optimizer, name=name, lr=1e-3, steps_per_epoch=10, epochs=3, done=10)
    rates = []
    for _ in range(20):  # the two epochs left of three
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] > 0.5e-3  # it goes on from a third of the new plan, not from a fresh warm-up...
    assert rates[:-1] == sorted(rates[:-1], reverse=True)  # ...falling...
    assert rates[-1] < 1e-5  # ...to its end at the new last step


def test_a_run_is_replanned_to_its_time_limit_and_resumes_with_that_plan(tmp_path):
    data = tmp_path / "phantom.npz"
    save_medmnist_npz(data, n_train=160, n_val=60, n_test=60, spatial_dims=2, size=24, num_classes=2, seed=1)
    config = RunConfig()
    config.data.path = str(data)
    config.model.options = {"widths": [8, 16, 32]}
    config.train.epochs, config.train.batch_size, config.train.threads = 400, 32, 1
    config.train.time_limit = 0.05  # three seconds: a few of the 400 epochs
    run = prepare_run_dir(tmp_path / "run", resume=False, force=False)
    result = fit(config, run, quiet=True)
    planned = yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"]
    assert 1 <= result["epochs_run"] <= planned < 400
    assert any("train.time_limit" in note for note in result["notes"])
    rows = list(csv.DictReader((run / "history.csv").open()))
    if result["epochs_run"] == planned and planned > 1:  # ran its plan: the last epoch's rate is near the end's
        assert float(rows[-1]["lr"]) < 0.5 * config.train.lr
    card = json.loads((run / "model.json").read_text())
    assert card["training"]["epochs_planned"] == planned
    resumed = fit(RunConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text())), run, resume=True, quiet=True)
    assert resumed["epochs_run"] <= planned


def test_a_negative_time_limit_is_refused():
    config = RunConfig()
    config.train.time_limit = -1
    with pytest.raises(ConfigError, match="time_limit"):
        config.validate()


def test_steps_that_fit_cut_only_an_epoch_that_would_overrun():
    now = time.perf_counter()
    assert TimeBudget(1.0, started=now - 5).steps_that_fit(10, 5) == 10  # 10 s of 60: the epoch fits
    assert TimeBudget(1.0, started=now - 10).steps_that_fit(100, 5) == 25  # 2 s a step: 51 s of training is 25
    assert TimeBudget(0.01, started=now - 10).steps_that_fit(100, 5) == 5  # the steps run are kept
    # a first step of 9 s (warm-up) and four of 0.25 s: the pace is 0.25 s, so 100 steps fit in 51 s
    assert TimeBudget(1.0, started=now - 10).steps_that_fit(100, 5, first=9.0) == 100
    assert TimeBudget(1.0, started=now - 7).probing_too_long()
    assert not TimeBudget(1.0, started=now - 5).probing_too_long()


def test_an_epoch_longer_than_the_budget_is_cut_to_the_steps_that_fit(tmp_path):
    data = tmp_path / "phantom.npz"
    save_medmnist_npz(data, n_train=600, n_val=40, n_test=40, spatial_dims=2, size=28, num_classes=2, seed=1)
    config = RunConfig()
    config.data.path = str(data)
    config.model.options = {"widths": [8, 16, 32]}
    config.train.epochs, config.train.batch_size, config.train.threads = 20, 4, 1  # 150 steps an epoch
    config.train.time_limit = 0.002  # 0.12 s: less than one epoch
    run = prepare_run_dir(tmp_path / "run", resume=False, force=False)
    result = fit(config, run, quiet=True)
    assert result["epochs_run"] == 1
    assert any("of one epoch" in note for note in result["notes"])
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert float(rows[0]["images_per_second"]) * float(rows[0]["seconds"]) < 600  # trained on part of the epoch
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 1  # a resume keeps the plan
