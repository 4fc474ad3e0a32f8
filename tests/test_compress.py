"""Structured pruning with fine-tuning, distillation, and `medattn compress` writing runs that evaluate and predict."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from explain_data import blob_csv, blob_segmentation, cli_json, train_tiny  # noqa: E402
from medattn.config import RunConfig  # noqa: E402
from medattn.engine.distill import soft_kl  # noqa: E402
from medattn.engine.trainer import fit  # noqa: E402
from medattn.errors import ConfigError  # noqa: E402
from medattn.export.prune import prune_model  # noqa: E402
from medattn.registry import create_model, model_from_card  # noqa: E402
from medattn.runs import prepare_run_dir  # noqa: E402


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    csv = blob_csv(root / "csv", n=100)
    teacher = train_tiny(csv, root / "teacher", epochs=5)
    pruned = cli_json("compress", teacher, "--prune", "0.5", "--epochs", "3", "--out", root / "pruned")
    return {"root": root, "csv": csv, "teacher": teacher, "pruned": pruned}


@pytest.mark.parametrize(
    ("name", "dims", "options", "low", "high"),
    [
        ("attn_resnet", 2, {}, 0.45, 0.58),  # the inner convs are nearly all of a residual network
        ("attn_resnet", 3, {"attention": "cbam", "widths": [8, 16, 32]}, 0.45, 0.62),
        ("attention_unet", 2, {"channels": [8, 16, 32]}, 0.45, 0.65),  # up-convs and gates stay whole
        ("unet", 3, {"channels": [8, 16, 32], "norm": "group"}, 0.45, 0.65),
    ],
)
def test_pruning_half_the_inner_channels_halves_the_parameters_and_rebuilds(name, dims, options, low, high):
    model = create_model(name, spatial_dims=dims, in_channels=1, num_classes=3, options=options).eval()
    pruned, kept = prune_model(model, 0.5)
    assert low <= _parameters(pruned) / _parameters(model) <= high
    assert kept
    assert all(count == model.get_submodule(path).conv.out_channels // 2 for path, count in kept.items())
    rebuilt = model_from_card(json.loads(json.dumps(pruned.config)))  # as a card on disk rebuilds it
    rebuilt.load_state_dict(pruned.state_dict())
    x = torch.randn(2, 1, *[12] * dims)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), pruned.eval()(x))
        assert pruned(x).shape == model(x).shape


def test_pruning_keeps_the_filters_of_largest_l1_norm():
    model = create_model("attn_resnet", spatial_dims=2, in_channels=1, num_classes=2, options={"widths": [8, 8, 8]})
    block = model.stages[0][0]
    with torch.no_grad():
        block.conv1.conv.weight.mul_(0.01)
        block.conv1.conv.weight[[1, 4, 6, 7]] *= 1000  # the four strongest filters
    pruned, _ = prune_model(model, 0.5)
    kept = pruned.stages[0][0]
    assert torch.equal(kept.conv1.conv.weight, block.conv1.conv.weight[[1, 4, 6, 7]])
    assert torch.equal(kept.conv2.conv.weight, block.conv2.conv.weight[:, [1, 4, 6, 7]])


def test_models_without_prunable_blocks_and_bad_shares_are_refused():
    vit = create_model("vit", spatial_dims=2, in_channels=1, num_classes=2, options={})
    with pytest.raises(ConfigError, match="'vit' cannot be pruned"):
        prune_model(vit, 0.5)
    model = create_model("attn_resnet", spatial_dims=2, in_channels=1, num_classes=2, options={})
    with pytest.raises(ConfigError, match="between 0 and 1"):
        prune_model(model, 1.0)
    with pytest.raises(ConfigError, match="not a prunable layer"):
        create_model("attn_resnet", spatial_dims=2, in_channels=1, num_classes=2, options={"pruned": {"head": 2}})


def test_pruned_and_fine_tuned_run_evaluates_and_predicts_above_a_floor(runs):
    pruned = Path(runs["pruned"]["run"])
    record = json.loads((pruned / "compress.json").read_text())
    assert 0.45 <= record["parameters"]["ratio"] <= 0.62
    assert record["epochs"] == 3
    metrics = cli_json("evaluate", pruned)
    assert metrics["auc"] >= 0.85  # the blob is easy; an untrained or broken network sits near 0.5
    image = next((runs["csv"].parent / "img").glob("*.png"))
    prediction = cli_json("predict", pruned, image)["predictions"][0]
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-5


def test_soft_kl_is_the_hand_computed_divergence():
    teacher, student = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    p = torch.softmax(teacher / 2, dim=1)
    expected = 4 * float((p * (p.log() - np.log(0.5))).sum())
    assert soft_kl(student, teacher, kind="softmax", temperature=2.0).item() == pytest.approx(expected, rel=1e-5)
    maps = torch.randn(2, 3, 4, 4)  # per voxel: zero where the student matches
    assert soft_kl(maps, maps, kind="softmax", temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)
    q = torch.sigmoid(torch.tensor(1.0))
    bernoulli = q * (q.log() - np.log(0.5)) + (1 - q) * ((1 - q).log() - np.log(0.5))
    value = soft_kl(torch.zeros(1, 1), torch.ones(1, 1), kind="sigmoid", temperature=1.0).item()
    assert value == pytest.approx(float(bernoulli), rel=1e-5)


def _divergence(teacher_run: Path, student, x) -> float:
    from medattn.engine.loaded import load_run

    teacher = load_run(teacher_run).model
    with torch.no_grad():
        return soft_kl(student.eval()(x), teacher(x), kind="softmax", temperature=1.0).item()


def test_distilled_student_moves_toward_the_teacher(runs):
    from medattn.engine.loaded import load_run
    from medattn.export.samples import real_inputs

    teacher = runs["teacher"]
    card = json.loads((teacher / "model.json").read_text())
    x = torch.from_numpy(real_inputs(teacher, card, split="val", limit=32))
    options = '{"widths": [4, 8, 16], "depths": [1, 1, 1]}'
    out = runs["root"] / "student"
    args = ("compress", teacher, "--distill", "--student", "attn_resnet", "--student-options", options)
    result = cli_json(*args, "--alpha", "1.0", "--epochs", "10", "--lr", "0.01", "--out", out)
    assert result["compress"]["distill"] == {"teacher": str(teacher), "temperature": 4.0, "alpha": 1.0}
    torch.manual_seed(0)
    untrained = create_model("attn_resnet", spatial_dims=2, in_channels=1, num_classes=2, options=json.loads(options))
    student = load_run(out).model
    assert _parameters(student) < _parameters(load_run(teacher).model) / 3
    before, after = _divergence(teacher, untrained, x), _divergence(teacher, student, x)
    assert after < 0.75 * before  # at T = 1, where the labels alone would not lead


def test_segmentation_pruning_and_per_voxel_distillation_train_through_the_engine(runs, tmp_path):
    data = blob_segmentation(runs["csv"], tmp_path / "seg")
    config = RunConfig()
    config.data.path, config.data.patch = str(data), [16, 16]
    config.model.name, config.model.options = "attention_unet", {"channels": [8, 16, 32]}
    config.train.epochs, config.train.batch_size, config.train.threads = 1, 8, 1
    teacher = prepare_run_dir(tmp_path / "teacher", resume=False, force=False)
    fit(config, teacher)
    pruned = cli_json("compress", teacher, "--prune", "0.5", "--distill", "--epochs", "1", "--out", tmp_path / "p")
    assert pruned["compress"]["parameters"]["ratio"] < 0.65
    metrics = cli_json("evaluate", pruned["run"])
    assert 0.0 <= metrics["dice_mean"] <= 1.0
    assert f"teacher: {teacher}" in (Path(pruned["run"]) / "config.yaml").read_text()  # resumable as a distillation


def test_compress_and_teacher_errors_name_what_was_wrong(runs, tmp_path):
    from typer.testing import CliRunner

    from medattn.cli import app

    def refused(*args) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code != 0
        return str(result.exception) + result.output

    teacher = runs["teacher"]
    assert "--prune SHARE and/or --distill" in refused("compress", teacher, "--out", tmp_path / "a")
    assert "add --distill" in refused("compress", teacher, "--student", "attn_resnet", "--out", tmp_path / "b")
    assert "JSON object" in refused(
        "compress",
        teacher,
        "--distill",
        "--student",
        "attn_resnet",
        "--student-options",
        "[1]",
        "--out",
        tmp_path / "c",
    )
    assert not (tmp_path / "c").exists()  # nothing half-made is left behind
    assert "mean nothing without train.teacher" in refused(
        "train", "--data", runs["csv"], "--alpha", "0.3", "--out", tmp_path / "d"
    )
    assert "(0, 1]" in refused(
        "train", "--data", runs["csv"], "--teacher", teacher, "--alpha", "2", "--out", tmp_path / "e"
    )
