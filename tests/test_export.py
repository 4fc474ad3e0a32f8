"""ONNX export with its parity check, INT8, and `--backend onnx|onnx-int8` on evaluate and predict without torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from deploy_runs import TORCH_HIDDEN, deploy_runs  # noqa: E402
from explain_data import cli_json  # noqa: E402
from medattn.engine.backend import OnnxNet  # noqa: E402
from medattn.errors import ConfigError, RunDirError  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return deploy_runs(tmp_path_factory.mktemp("deploy"))


def _hidden(*args) -> dict:
    """`medattn ARGS --json` in a fresh interpreter where torch and MONAI cannot be imported."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", TORCH_HIDDEN, *map(str, args), "--json"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("task", ["classify", "segment", "regress"])
def test_export_records_parity_on_real_inputs_with_a_dynamic_batch(runs, task):
    record = runs["exports"][task]
    run = runs[task]
    assert record["parity"]["max_abs_diff"] <= record["parity"]["tolerance"]
    assert record["parity"]["inputs"] >= 8
    assert json.loads((run / "export.json").read_text())["parity"] == record["parity"]
    net = OnnxNet(run / "model.onnx")
    shape = [3, *[24 if s == "any" else s for s in record["input_shape"][1:]]]
    assert net(np.zeros(shape, np.float32)).shape[0] == 3  # dynamic batch


def test_a_dense_network_is_exported_with_dynamic_spatial_axes(runs):
    record = runs["exports"]["segment"]
    assert record["dynamic_axes"] == ["batch", "spatial"]
    out = OnnxNet(runs["segment"] / "model.onnx")(np.zeros((1, 1, 48, 32), np.float32))
    assert out.shape == (1, 2, 48, 32)
    assert runs["exports"]["classify"]["dynamic_axes"] == ["batch"]


def test_export_fails_above_tolerance_and_leaves_no_model(runs, monkeypatch, tmp_path):
    import shutil

    from medattn.export import to_onnx

    run = tmp_path / "run"
    shutil.copytree(runs["regress"], run)
    (run / "model.onnx").unlink()
    real = to_onnx.torch_outputs
    monkeypatch.setattr(to_onnx, "torch_outputs", lambda model, x: real(model, x) + 0.01)
    with pytest.raises(ConfigError, match="differs from PyTorch by 0.01"):
        to_onnx.export_onnx(run)
    assert not (run / "model.onnx").exists()


def test_int8_is_calibrated_on_training_images_and_agrees_with_fp32(runs):
    int8 = runs["exports"]["classify"]["int8"]
    assert int8["calibration"] == {"inputs": 30, "split": "train"}  # every training image of the set
    assert int8["argmax_agreement"] >= 0.9
    assert (runs["classify"] / "model.int8.onnx").is_file()
    assert "QuantizeLinear" in {
        n.op_type for n in __import__("onnx").load(runs["classify"] / "model.int8.onnx").graph.node
    }


def test_predict_through_onnx_without_torch_gives_the_torch_answer(runs, tmp_path):
    images = sorted((runs["data"].parent / "img").iterdir())[:4]
    torch_rows = cli_json("predict", runs["classify"], *images)["predictions"]
    for backend, tolerance in (("onnx", 1e-5), ("onnx-int8", 0.05)):
        rows = _hidden("predict", runs["classify"], *images, "--backend", backend)["predictions"]
        for a, b in zip(torch_rows, rows, strict=True):
            assert a["class"] == b["class"]
            assert np.allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=tolerance)
    files = sorted((runs["segdata"] / "images").iterdir())[1:8:2]
    masks = cli_json("predict", runs["segment"], *files, "--out-dir", tmp_path / "t")["predictions"]
    hidden = _hidden("predict", runs["segment"], *files, "--out-dir", tmp_path / "o", "--backend", "onnx")
    assert [r["volumes"] for r in masks] == [r["volumes"] for r in hidden["predictions"]]
    from PIL import Image

    for a, b in zip(masks, hidden["predictions"], strict=True):
        assert np.array_equal(np.asarray(Image.open(a["mask"])), np.asarray(Image.open(b["mask"])))


def test_evaluate_through_onnx_without_torch_matches_torch(runs):
    for task, metric in (("classify", "auc"), ("segment", "dice_mean"), ("regress", "mae")):
        expected = cli_json("evaluate", runs[task], "--backend", "torch")
        got = _hidden("evaluate", runs[task], "--backend", "onnx")
        assert got["backend"] == "onnx"
        value = expected[metric] if metric in expected else expected["targets"]["target"][metric]
        found = got[metric] if metric in got else got["targets"]["target"][metric]
        assert found == pytest.approx(value, abs=1e-4), task


def test_a_backend_without_its_export_names_the_command(runs, tmp_path):
    import shutil

    from medattn.engine.loaded import load_run, reading

    run = tmp_path / "run"
    shutil.copytree(runs["regress"], run)
    with reading(run, backend="onnx-int8"), pytest.raises(RunDirError, match="export .* --quantize int8"):
        load_run(run)
    with pytest.raises(ConfigError, match="--backend 'tf'"), reading(run, backend="tf"):
        pass
