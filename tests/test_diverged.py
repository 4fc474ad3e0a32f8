"""A loss that becomes NaN or infinite stops training with the epoch and step, keeping the last good checkpoint."""

import math

import pytest
import torch

from medattn.config import RunConfig
from medattn.data.phantom import save_medmnist_npz
from medattn.engine.checkpoint import load_checkpoint
from medattn.engine.trainer import fit
from medattn.errors import MedattnError
from medattn.runs import prepare_run_dir
from medattn.tasks.classify.task import ClassificationTask


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(tmp_path, monkeypatch, bad):
    save_medmnist_npz(tmp_path / "p.npz", n_train=32, n_val=8, n_test=8, spatial_dims=2, size=16, num_classes=2)
    config = RunConfig()
    config.data.path = str(tmp_path / "p.npz")
    config.model.options = {"widths": [4, 8, 8]}
    config.train.epochs, config.train.batch_size, config.train.threads = 3, 8, 1  # 4 steps an epoch
    real, calls = ClassificationTask.loss, []

    class Poisoned:
        def __init__(self, inner):
            self.inner, self.base = inner, inner.base  # validation scores with `base`

        def __call__(self, *inputs):
            calls.append(1)
            value = self.inner(*inputs)
            return value * bad if len(calls) == 7 else value  # epoch 2, step 3

    def poisoned(self, *args):
        return Poisoned(real(self, *args))

    monkeypatch.setattr(ClassificationTask, "loss", poisoned)
    run = prepare_run_dir(tmp_path / "run", resume=False, force=False)
    with pytest.raises(MedattnError, match=r"epoch 2, step 3: the loss became (nan|inf).*after epoch 1\), is kept"):
        fit(config, run, quiet=True)
    kept = load_checkpoint(run)
    assert kept["epoch"] == 0  # the end of epoch 1: nothing of epoch 2 was written
    assert all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())
    assert not (run / "model.json").exists()
