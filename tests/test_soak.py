"""Kill -9 in an epoch, in validation and in a checkpoint write, resume each time: the end is bit-identical to an
unbroken run's and no checkpoint on disk is ever unreadable. benchmarks/soak.py does 20 kills per task."""

import random

import pytest

from medattn.engine.trainer import fit
from medattn.runs import prepare_run_dir
from medattn.soak import differences, epoch_seconds, killed_run, phantom_config


@pytest.mark.parametrize(("kind", "kills"), [("images", 3), ("masks", 2)])
def test_kills_at_random_moments_resume_to_the_unbroken_result(tmp_path, kind, kills):
    config = phantom_config(tmp_path, kind, epochs=4)
    fit(config, prepare_run_dir(tmp_path / "unbroken", resume=False, force=False), quiet=True)
    seconds = epoch_seconds(tmp_path / "unbroken")
    report = killed_run(config, tmp_path / "killed", kills=kills, rng=random.Random(kills), epoch_seconds=seconds)
    assert report["unreadable"] == []
    assert sum(report["killed_in"].values()) >= 1, report
    assert differences(tmp_path / "unbroken", tmp_path / "killed") == []
