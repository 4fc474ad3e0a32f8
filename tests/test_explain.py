"""Explanations: every method on 2D and 3D models leaves the model as it was; the target layer is found or named;
`medattn explain` writes overlays, mosaics, NIfTI heat maps on the input's grid and raw maps."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import medattn.models  # noqa: F401  (registers the models)
from medattn.cli import app
from medattn.errors import ConfigError
from medattn.explain.methods import METHODS, explain_input
from medattn.explain.target import Target
from medattn.registry import create_model

sys.path.insert(0, str(Path(__file__).parent))
from explain_data import blob_csv, cli_json, explain_split, train_tiny  # noqa: E402

MODELS = [
    ("attn_resnet", 2, {"widths": [8, 16], "depths": [1, 1], "attention": "cbam"}),
    ("attn_resnet", 3, {"widths": [8, 16], "depths": [1, 1], "attention": "se"}),
    ("attn_resnet", 2, {"widths": [8, 16], "depths": [1, 1], "attention": "eca"}),
    ("hybrid", 2, {"widths": [8, 16], "embed_dim": 16, "depth": 1}),
    ("vit", 2, {"embed_dim": 16, "depth": 2}),
    ("attention_unet", 2, {}),
]


@pytest.mark.parametrize(("name", "dims", "options"), MODELS)
def test_every_method_maps_the_input_grid_and_never_changes_the_model(name, dims, options):
    torch.manual_seed(0)
    model = create_model(name, spatial_dims=dims, in_channels=1, num_classes=2, options=options).eval()
    x = torch.randn(1, 1, *[12 if dims == 3 else 16] * dims)
    with torch.no_grad():
        before = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    region = (before[0].argmax(0) == 1).float() if before.ndim > 2 else None
    target = Target(1, "one", "", region=region)
    for method in METHODS:
        heat = explain_input(model, x, target, method)
        assert tuple(heat.shape) == tuple(x.shape[2:]), method
        assert torch.isfinite(heat).all(), method
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not model.training
    assert "forward_head" not in vars(model)  # the recorder's wrapper is gone


def test_integrated_gradients_are_complete():
    torch.manual_seed(1)
    model = create_model("attn_resnet", spatial_dims=2, in_channels=1, num_classes=2, options=MODELS[0][2]).eval()
    x = torch.randn(1, 1, 16, 16)
    target = Target(0, "zero", "")
    with torch.no_grad():
        gap = float(model(x)[0, 0] - model(torch.zeros_like(x))[0, 0])
    total = float(explain_input(model, x, target, "integrated_gradients").sum())
    assert total == pytest.approx(gap, rel=0.05, abs=1e-3)  # sum of attributions = score(x) - score(baseline)


def test_the_target_layer_is_found_or_named():
    torch.manual_seed(0)
    model = create_model("attn_resnet", spatial_dims=2, in_channels=1, num_classes=2, options=MODELS[0][2]).eval()
    x = torch.randn(1, 1, 16, 16)
    target = Target(1, "one", "")
    auto = explain_input(model, x, target, "hirescam")
    last = explain_input(model, x, target, "hirescam", layer="stages.1")
    first = explain_input(model, x, target, "hirescam", layer="stages.0")
    assert torch.allclose(auto, last)  # the last spatial block is what the head reads
    assert not torch.allclose(first, last)
    with pytest.raises(ConfigError, match="stages.1"):
        explain_input(model, x, target, "gradcam", layer="stages.9")


@pytest.fixture(scope="module")
def blob_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    data = blob_csv(root / "data")
    return data, train_tiny(data, root / "run")


def test_explain_files_writes_overlays_and_keeps_predictions(blob_run, tmp_path):
    data, run = blob_run
    files = [data.parent / "img" / "131.png", data.parent / "img" / "132.png"]
    before = cli_json("predict", run, *files)
    explained = cli_json("explain", run, *files, "--method", "gradcam,attention", "--out", tmp_path, "--npy")
    after = cli_json("predict", run, *files)
    assert before == after
    for row, prediction in zip(explained["explanations"], before["predictions"], strict=True):
        assert f"predicted {prediction['class']}" in row["prediction"]
        for files_written in row["files"].values():
            assert Path(files_written["png"]).stat().st_size > 1000
            assert np.load(files_written["npy"]).shape == (24, 24)


def test_explain_a_split_names_the_target_and_refuses_bad_options(blob_run, tmp_path):
    data, run = blob_run
    payload = explain_split(run, data, "--limit", "3", "--target", "blob", "--out", tmp_path)
    assert len(payload["explanations"]) == 3
    assert {row["target"] for row in payload["explanations"]} == {"blob"}
    assert all(row["truth"].startswith("true ") for row in payload["explanations"])
    bad = CliRunner().invoke(app, ["explain", str(run), "--data", str(data), "--method", "gradcm"])
    assert bad.exit_code != 0
    assert "gradcam" in str(bad.exception)
    bad = CliRunner().invoke(app, ["explain", str(run), "--data", str(data), "--target", "tumour", "--limit", "1"])
    assert "tumour" in str(bad.exception)


def test_a_volume_gets_a_mosaic_and_a_nifti_on_its_own_grid(tmp_path):
    from medattn.data.meta import ImageMeta
    from medattn.data.phantom import save_medmnist_npz
    from medattn.data.readers import read_image, write_image

    data = save_medmnist_npz(tmp_path / "p3.npz", n_train=24, n_val=8, n_test=4, spatial_dims=3, size=12, seed=0)
    run = train_tiny(data, tmp_path / "run", epochs=1, attention="se")
    volume = np.random.default_rng(0).random((1, 10, 14, 12)).astype(np.float32)
    affine = np.array([[0, 0, 2.0, 5], [0, 1.5, 0, -3], [1.0, 0, 0, 7], [0, 0, 0, 1]])
    write_image(tmp_path / "case.nii.gz", volume, ImageMeta(spacing=(1.0, 1.5, 2.0), affine=affine))
    payload = cli_json(
        "explain", run, tmp_path / "case.nii.gz", "--method", "attention,gradcam++", "--out", tmp_path / "out"
    )
    for files in payload["explanations"][0]["files"].values():
        heat, meta = read_image(files["nifti"])
        assert heat.shape == volume.shape
        assert np.allclose(meta.affine, affine)
        assert Path(files["png"]).stat().st_size > 1000


def test_a_2d_model_explains_a_volume_slice_by_slice(blob_run, tmp_path):
    from medattn.data.meta import ImageMeta
    from medattn.data.readers import read_image, write_image

    _, run = blob_run
    volume = np.random.default_rng(1).normal(90, 20, (1, 24, 24, 5)).astype(np.float32)
    volume[0, 8:14, 8:14, 2] += 110  # a blob on the middle slice
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    write_image(tmp_path / "vol.nii.gz", volume, ImageMeta(spacing=(1.0, 1.0, 3.0), affine=affine))
    payload = cli_json("explain", run, tmp_path / "vol.nii.gz", "--method", "gradcam", "--out", tmp_path / "o")
    row = payload["explanations"][0]
    assert "mean over 5 slices" in row["prediction"]
    heat, meta = read_image(row["files"]["gradcam"]["nifti"])
    assert heat.shape == volume.shape
    assert np.allclose(meta.affine, affine)
    assert heat[0, 8:14, 8:14, 2].mean() > heat[0, :, :, 0].mean()  # the blob's slice, at the blob
