"""A full disk (a file-size limit, RLIMIT_FSIZE, in a child process) during a checkpoint or an output write leaves
the previous file intact and says so in a typed error."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import medattn
from medattn.data.phantom import save_medmnist_npz
from medattn.data.readers import read_image
from medattn.engine.checkpoint import load_checkpoint

LIMITED = """
import resource, signal, sys
from pathlib import Path
from medattn.errors import MedattnError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so an over-limit write fails with EFBIG instead of killing us


def limit(size):
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

"""


def _child(body: str, tmp_path) -> subprocess.CompletedProcess:
    script = LIMITED + textwrap.dedent(body) + "\ntry:\n    main()\nexcept MedattnError as error:\n    print(error)\n"
    script += "    sys.exit(2)\n"
    env = {**os.environ, "PYTHONPATH": str(Path(medattn.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_checkpoint_that_does_not_fit_keeps_the_previous_one(tmp_path):
    save_medmnist_npz(tmp_path / "p.npz", n_train=16, n_val=8, n_test=8, spatial_dims=2, size=16, num_classes=2)
    done = _child(
        """
        from medattn.config import RunConfig
        from medattn.engine import step
        from medattn.engine.trainer import fit
        from medattn.runs import prepare_run_dir

        save = step.ckpt.save_checkpoint

        def save_then_fill_the_disk(run, **state):
            save(run, **state)
            limit((run / "checkpoint" / "last.pt").stat().st_size - 1)  # the next checkpoint no longer fits

        def main():
            step.ckpt.save_checkpoint = save_then_fill_the_disk
            config = RunConfig()
            config.data.path = "p.npz"
            config.model.options = {"widths": [4, 8, 8]}
            config.train.epochs, config.train.batch_size, config.train.threads = 3, 8, 1
            fit(config, prepare_run_dir(Path("run"), resume=False, force=False), quiet=True)
        """,
        tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot write" in done.stdout, done.stdout
    assert "the previous last.pt is intact" in done.stdout
    assert load_checkpoint(tmp_path / "run")["epoch"] == 0  # the end of epoch 1, whole
    assert not list((tmp_path / "run" / "checkpoint").glob(".*tmp*"))  # no half-written temporary left behind


def test_an_output_that_does_not_fit_keeps_the_previous_one(tmp_path):
    done = _child(
        """
        import numpy as np
        from medattn.data.meta import ImageMeta
        from medattn.data.readers import write_image

        def main():
            meta = ImageMeta(spacing=(1.0, 1.0, 1.0), affine=np.eye(4))
            write_image("mask.nii", np.ones((1, 8, 8, 8), np.uint8), meta)
            limit(Path("mask.nii").stat().st_size + 100)
            write_image("mask.nii", np.zeros((1, 40, 40, 40), np.uint8), meta)
        """,
        tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot write" in done.stdout, done.stdout
    assert "the previous mask.nii is intact" in done.stdout
    array, _ = read_image(tmp_path / "mask.nii")
    assert array.shape == (1, 8, 8, 8)
    assert np.all(array == 1)
