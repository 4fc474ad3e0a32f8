"""`--init RUN`: every layer but the head comes from the other run; a different architecture is refused."""

import json

import pytest
import torch
from safetensors.torch import load_file

from medattn.config import RunConfig
from medattn.data.phantom import save_medmnist_npz
from medattn.engine.trainer import fit
from medattn.engine.transfer import load_backbone
from medattn.errors import ConfigError
from medattn.registry import create_model
from medattn.runs import prepare_run_dir

OPTIONS = {"widths": [8, 16, 32]}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    data = root / "two.npz"
    save_medmnist_npz(data, n_train=64, n_val=32, n_test=16, spatial_dims=2, size=20, num_classes=2, seed=6)
    config = RunConfig()
    config.data.path = str(data)
    config.model.options = OPTIONS
    config.train.epochs = 1
    config.train.threads = 1
    run = prepare_run_dir(root / "source", resume=False, force=False)
    fit(config, run)
    return root, run


def test_backbone_is_copied_and_the_head_is_fresh(source_run):
    _, run = source_run
    model = create_model("attn_resnet", spatial_dims=2, in_channels=1, num_classes=3, options=OPTIONS)
    copied = load_backbone(model, run, name="attn_resnet", options=OPTIONS, spatial_dims=2)
    weights = load_file(run / "model.safetensors")
    state = model.state_dict()
    assert copied == len([k for k in weights if not k.startswith("head.")])
    assert all(torch.equal(state[k], v) for k, v in weights.items() if not k.startswith("head."))
    assert state["head.fc.weight"].shape == (3, 32)


def test_fine_tuning_run_records_its_origin(source_run):
    root, run = source_run
    data = root / "three.npz"
    save_medmnist_npz(data, n_train=60, n_val=30, n_test=15, spatial_dims=2, size=20, num_classes=3, seed=7)
    config = RunConfig()
    config.data.path = str(data)
    config.model.options = OPTIONS
    config.model.init = str(run)
    config.train.epochs = 1
    config.train.threads = 1
    target = prepare_run_dir(root / "target", resume=False, force=False)
    fit(config, target)
    card = json.loads((target / "model.json").read_text())
    assert any("initialised" in note and str(run) in note for note in card["training_data"]["notes"])
    assert card["model"]["num_classes"] == 3


@pytest.mark.parametrize(
    ("name", "options", "dims", "channels"),
    [
        ("attn_resnet", {"widths": [8, 16, 64]}, 2, 1),
        ("cnn", {}, 2, 1),
        ("attn_resnet", OPTIONS, 3, 1),
        ("attn_resnet", OPTIONS, 2, 3),
    ],
)
def test_mismatched_architecture_is_refused(source_run, name, options, dims, channels):
    _, run = source_run
    model = create_model(name, spatial_dims=dims, in_channels=channels, num_classes=2, options=options)
    with pytest.raises(ConfigError, match="do not (match|fit)"):
        load_backbone(model, run, name=name, options=options, spatial_dims=dims)
