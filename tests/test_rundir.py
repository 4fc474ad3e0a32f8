"""A damaged run directory gives a typed error naming the damaged file and what --resume or --force would do."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from medattn.config import RunConfig
from medattn.data.phantom import save_medmnist_npz
from medattn.engine.checkpoint import load_checkpoint, resume_config
from medattn.engine.loaded import load_run
from medattn.engine.trainer import fit
from medattn.errors import RunDirError
from medattn.runs import prepare_run_dir


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("rundir")
    save_medmnist_npz(root / "p.npz", n_train=16, n_val=8, n_test=8, spatial_dims=2, size=16, num_classes=2, seed=0)
    config = RunConfig()
    config.data.path = str(root / "p.npz")
    config.model.options = {"widths": [4, 8, 8]}
    config.train.epochs, config.train.batch_size, config.train.threads = 1, 8, 1
    fit(config, prepare_run_dir(root / "run", resume=False, force=False), quiet=True)
    return root / "run"


@pytest.fixture
def run(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "run")


def test_truncated_weights_name_the_file_and_the_repair(run):
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RunDirError, match=r"model\.safetensors is damaged.*--resume` writes it again.*--force"):
        load_run(run)


@pytest.mark.parametrize(
    "edit",
    [
        lambda card: card["model"].update(name="no_such_model"),
        lambda card: card.pop("input"),
        lambda card: card["input"]["intensity"].update(std=float("nan")),
        lambda card: card["model"].update(num_classes=7),
    ],
)
def test_an_edited_card_names_model_json(run, edit):
    card = json.loads((run / "model.json").read_text())
    edit(card)
    (run / "model.json").write_text(json.dumps(card))
    with pytest.raises(RunDirError, match=r"model\.(json|safetensors) is damaged"):
        load_run(run)


def test_resume_of_a_finished_run_writes_its_weights_again(run):
    (run / "model.safetensors").unlink()
    with pytest.raises(RunDirError, match="missing model.safetensors.*--resume"):
        load_run(run)
    fit(resume_config(run), run, resume=True, quiet=True)
    assert load_run(run).model is not None


def test_a_damaged_or_missing_checkpoint_says_resume_cannot_continue(run):
    checkpoint = run / "checkpoint" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(RunDirError, match=r"last\.pt is damaged.*cannot continue.*--force"):
        load_checkpoint(run)
    checkpoint.unlink()
    with pytest.raises(RunDirError, match=r"no checkpoint/last\.pt.*--force"):
        prepare_run_dir(run, resume=True, force=False)


def test_a_config_naming_an_unknown_model_names_config_yaml(run):
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["name"] = "attn_resnett"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(RunDirError, match=r"config\.yaml is damaged: unknown model 'attn_resnett'.*--force"):
        resume_config(run)


def test_the_command_line_prints_the_damage_without_a_traceback(run):
    (run / "model.safetensors").write_bytes(b"\x00" * 64)
    image = run / "x.png"
    from PIL import Image

    Image.new("L", (16, 16)).save(image)
    done = subprocess.run(
        [sys.executable, "-m", "medattn", "predict", str(run), str(image)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "model.safetensors is damaged" in done.stderr
    assert "Traceback" not in done.stderr
