"""Training detectors: boxes follow the pixels through augmentation, every box gets cells to learn from, a detector
learns a small set, and train / evaluate / predict / resume / --init / tune cv run end to end in 2D and 3D."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.detection_sets import csv_set
from tests.run_cli import invoke

from medattn.data.mask_boxes import mask_boxes
from medattn.tasks.detect.assign import assign
from medattn.tasks.detect.augment import BoxAugment

TINY = {"detect_anchorfree": "{widths: [8, 16, 32], depths: [1, 1, 1], channels: 16, head_depth: 1}"}
TINY["faster_rcnn"] = "{widths: [8, 16, 32], depths: [1, 1, 1], channels: 16, representation: 32}"


def _square(dims: int, size: int = 32):
    x = torch.zeros(1, *[size] * dims)
    region = tuple(slice(5, 12) if a == 0 else slice(9, 20) for a in range(dims))
    x[(slice(None), *region)] = 1.0
    box = torch.tensor([[5.0] + [9.0] * (dims - 1) + [12.0] + [20.0] * (dims - 1)])
    return x, box, torch.tensor([0])


def _found_box(x: torch.Tensor) -> list[float]:
    boxes, _ = mask_boxes((x[0] > 0.5).numpy().astype(np.uint8))
    return boxes[0].tolist()


@pytest.mark.parametrize("dims", [2, 3])
def test_flips_move_the_boxes_with_the_pixels(dims):
    x, box, label = _square(dims)
    augment = BoxAugment([{"name": "flip", "prob": 1.0}], spatial_dims=dims, seed=0)
    moved, boxes, labels = augment(x, box, label)
    assert boxes[0].tolist() == _found_box(moved)
    assert boxes[0].tolist() != box[0].tolist()


@pytest.mark.parametrize("dims", [2, 3])
def test_affine_moves_and_scales_the_boxes_with_the_pixels(dims):
    x, box, label = _square(dims)
    spec = {"name": "affine", "prob": 1.0, "rotate_deg": 0.0, "scale": 0.3, "translate": 0.1}
    for seed in range(3):
        moved, boxes, _ = BoxAugment([spec], spatial_dims=dims, seed=seed)(x, box, label)
        np.testing.assert_allclose(boxes[0].numpy(), _found_box(moved), atol=1.0)


def test_rotation_keeps_a_round_object_s_box_tight():
    size = 48
    grid = torch.stack(torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij"))
    disc = ((grid - 24).square().sum(dim=0) <= 64).float()[None]  # radius 8 about (24, 24)
    box = torch.tensor([[16.0, 16.0, 32.0, 32.0]])
    spec = {"name": "affine", "prob": 1.0, "rotate_deg": 30.0, "scale": 0.0, "translate": 0.0}
    moved, boxes, _ = BoxAugment([spec], spatial_dims=2, seed=1)(disc, box, torch.tensor([0]))
    np.testing.assert_allclose(boxes[0].numpy(), box[0].numpy(), atol=0.01)  # a disc turned is the same disc
    np.testing.assert_allclose(_found_box(moved), box[0].numpy(), atol=1.0)


def test_boxes_pushed_out_of_the_image_are_dropped():
    x, box, label = _square(2)
    spec = {"name": "affine", "prob": 1.0, "rotate_deg": 0.0, "scale": 0.0, "translate": 0.9}
    kept = [len(BoxAugment([spec], spatial_dims=2, seed=s)(x, box, label)[1]) for s in range(20)]
    assert set(kept) == {0, 1}


def test_every_box_gets_cells_even_one_smaller_than_a_cell():
    from medattn.models.detector import level_points

    centres, strides = level_points((64, 64), [8, 16, 32])
    boxes = torch.tensor([[10.0, 10.0, 13.0, 13.0], [30.0, 20.0, 60.0, 50.0], [31.0, 22.0, 58.0, 47.0]])
    labels = torch.tensor([0, 1, 1])
    scores = torch.full((len(centres), 2), 0.5)
    predicted = torch.cat([centres - 6, centres + 6], dim=1)
    found = assign(scores, predicted, centres, strides, boxes, labels)
    owners = {tuple(b.tolist()) for b in found.boxes[found.positive]}
    assert owners == {tuple(b.tolist()) for b in boxes}  # each of the three has cells, the 3-px one too
    assert (found.scores > 0).sum(dim=1).max() == 1  # a cell learns one box and one class
    assert float(found.scores.max()) <= 1.0


def _config(tmp_path: Path, model: str, extra: str = "") -> Path:
    path = tmp_path / f"{model}.yaml"
    path.write_text(f"model: {{name: {model}, options: {TINY[model]}}}\ntrain: {{threads: 1, batch_size: 4}}\n{extra}")
    return path


def test_the_default_detector_learns_a_small_set(tmp_path):
    """A few dozen epochs on 24 pictures of bright and dark squares: both classes found, placed and told apart."""
    data = csv_set(tmp_path / "set", n=24)
    extra = "data: {augment: [{name: flip, prob: 0.5}]}\ntrain: {threads: 1, batch_size: 4, epochs: 40, lr: 0.003}\n"
    config = tmp_path / "learn.yaml"
    config.write_text(f"model: {{name: detect_anchorfree, options: {TINY['detect_anchorfree']}}}\n{extra}")
    invoke("train", "--data", data, "--out", tmp_path / "run", "--config", config, "--json")
    unseen = csv_set(tmp_path / "unseen", n=16, seed=1)
    metrics = invoke("evaluate", tmp_path / "run", "--data", unseen, "--json")
    assert metrics["split"] == "all"
    assert metrics["map50"] > 0.8
    assert min(metrics["ap50_per_class"].values()) > 0.6


@pytest.mark.parametrize("model", ["detect_anchorfree", "faster_rcnn"])
@pytest.mark.parametrize("dims", [2, 3])
def test_train_evaluate_predict_in_2d_and_3d(model, dims, tmp_path):
    data = csv_set(tmp_path / "set", n=12, dims=dims, dtype="uint8" if dims == 2 else "float32")
    run = tmp_path / "run"
    trained = invoke(
        "train", "--data", data, "--out", run, "--config", _config(tmp_path, model), "--epochs", "1", "--json"
    )
    assert set(trained["val"]) >= {"map", "map50", "froc", "ar100"}
    card = json.loads((run / "model.json").read_text())
    assert card["model"]["spatial_dims"] == dims
    assert card["class_names"] == ["bright", "dark"]
    assert card["input"]["patch"] is not None  # small pictures: native pixels, the whole image as the patch
    metrics = invoke("evaluate", run, "--json")
    assert {"map50", "map", "ap50_per_class", "froc", "n", "map_ci"} <= set(metrics)
    image = sorted((tmp_path / "set" / "images").iterdir())[0]
    predicted = invoke("predict", run, image, "--out-dir", tmp_path / "out", "--json")["predictions"][0]
    for kind in ("json", "csv", "png"):
        assert Path(predicted["files"][kind]).is_file()
    header = Path(predicted["files"]["csv"]).read_text().splitlines()[0]
    assert header.startswith("path,x1,y1," + ("x2,y2" if dims == 2 else "z1,x2,y2,z2") + ",label,score,world_x_min")
    if dims == 2:  # a volume given to a 2D detector: slice by slice, boxes one slice thick
        from tests.detection_sets import objects, write_picture

        volume = write_picture(tmp_path / "volumes", "v", objects(1, 3)[0], layout="nifti")
        row = invoke("predict", run, volume, "--slice-axis", "2", "--out-dir", tmp_path / "out", "--json")
        assert row["predictions"][0]["slice_axis"] == 2
        boxes = [b["box"] for b in row["predictions"][0]["boxes"]]
        assert all(b["z2"] - b["z1"] == 1 for b in boxes)


def test_resume_init_and_cross_validation(tmp_path):
    data = csv_set(tmp_path / "set", n=16)
    config = _config(tmp_path, "detect_anchorfree")
    first = invoke("train", "--data", data, "--out", tmp_path / "a", "--config", config, "--epochs", "2", "--json")
    resumed = invoke("train", "--out", tmp_path / "a", "--resume", "--json")
    assert resumed["epochs_run"] == first["epochs_run"] == 2
    init = invoke(
        "train",
        "--data",
        data,
        "--out",
        tmp_path / "b",
        "--config",
        config,
        "--epochs",
        "1",
        "--init",
        tmp_path / "a",
        "--json",
    )
    assert any("initialised" in note for note in init["notes"])
    cv = invoke(
        "tune",
        "cv",
        "--data",
        data,
        "--folds",
        "2",
        "--out",
        tmp_path / "cv",
        "--config",
        config,
        "--epochs",
        "1",
        "--json",
    )
    assert len(cv["folds"]) == 2
    assert "map" in cv["mean"]
    assert invoke("evaluate", tmp_path / "cv", "--json")["ensemble"]["members"] == 2


class _Thresholder:
    """A stand-in detector: every bright square of a tile is a box of class 0, scored by its size."""

    def detect(self, x, **settings):
        boxes, _ = mask_boxes((x[0, 0] > 0.5).numpy().astype(np.uint8))
        boxes = torch.from_numpy(boxes)
        scores = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1) / 1000
        return [{"boxes": boxes, "scores": scores, "labels": torch.zeros(len(boxes), dtype=torch.long)}]


def test_tiles_find_every_object_whole_and_once():
    """An image larger than the window: objects cut by a tile's edge are taken from the tile that holds them whole."""
    from medattn.data.preprocess import Intensity
    from medattn.tasks.detect.inference import detect_prepared, tile_starts
    from medattn.tasks.detect.plan import DetectionPlan

    x = torch.zeros(1, 100, 130)
    truth = [[10, 10, 22, 30], [40, 45, 60, 70], [5, 95, 25, 120], [80, 20, 95, 40], [62, 95, 80, 115]]
    for r0, c0, r1, c1 in truth:
        x[0, r0:r1, c0:c1] = 1.0
    plan = DetectionPlan(2, 1, Intensity(), patch=[32, 32], window=[48, 48], overlap=[28, 28])
    assert len(tile_starts(130, 48, 28)) > 2
    found = detect_prepared(_Thresholder(), x, plan, device="cpu")
    assert sorted(found["boxes"].tolist()) == sorted([[float(v) for v in box] for box in truth])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["detect_anchorfree", "faster_rcnn"])
def test_two_processes_train_a_detector(model, tmp_path):
    """Under torchrun (DDP over gloo): each rank's boxes travel with its share of the batch, and the second stage
    of Faster R-CNN, run in the loss, reduces its gradients like the rest."""
    import os
    import subprocess
    import sys

    data = csv_set(tmp_path / "set", n=16)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "medattn"]
    command += ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--config", str(_config(tmp_path, model))]
    command += ["--epochs", "2"]
    done = subprocess.run(
        command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["training"]["epochs_run"] == 2


def test_letterbox_keeps_the_aspect_and_boxes_scale_back(tmp_path):
    from medattn.tasks.detect.plan import letterbox

    x = torch.arange(48 * 64, dtype=torch.float32).reshape(1, 48, 64)
    boxed, scale = letterbox(x, [32, 32])
    assert scale == 0.5
    assert tuple(boxed.shape) == (1, 32, 32)
    assert bool((boxed[:, 24:] == boxed[:, :24].min()).all())  # the far rows: padding with the darkest value
    data = csv_set(tmp_path / "set", n=12)
    run = tmp_path / "run"
    config = _config(tmp_path, "detect_anchorfree")
    invoke("train", "--data", data, "--out", run, "--config", config, "--size", "32", "--epochs", "1", "--json")
    card = json.loads((run / "model.json").read_text())
    assert card["input"]["letterbox"]
    assert card["input"]["size"] == [32, 32]
    assert card["input"]["patch"] is None
    assert invoke("evaluate", run, "--json")["n"] >= 1


def test_report_shows_metrics_and_boxes_and_explain_says_why_not(tmp_path):
    from typer.testing import CliRunner

    from medattn.cli import app
    from medattn.errors import ConfigError

    data = csv_set(tmp_path / "set", n=12)
    run = tmp_path / "run"
    invoke(
        "train",
        "--data",
        data,
        "--out",
        run,
        "--config",
        _config(tmp_path, "detect_anchorfree"),
        "--epochs",
        "1",
        "--json",
    )
    metrics = invoke("evaluate", run, "--json")
    page = Path(metrics["report"]).read_text()
    assert "mAP@0.5" in page
    assert "sensitivity at 1 FP/image" in page
    assert page.count('src="data:image/png;base64,') >= 2  # the boxes drawn on test images
    assert "Gallery" not in page
    result = CliRunner().invoke(app, ["explain", str(run), "--data", str(data)])
    assert isinstance(result.exception, ConfigError)
    assert "is a detection run" in str(result.exception)


def test_levels_and_geometry_follow_the_training_boxes():
    from medattn.tasks.detect.plan import choose_geometry, choose_strides

    levels = [4, 8, 16, 32]
    cells = np.full((50, 2), 12.0)  # 12-px objects: a stride-8 cell would hold several
    lesions = np.full((50, 2), 30.0)
    organs = np.full((50, 2), 200.0)
    assert choose_strides(cells, 2, levels) == [4, 8, 16]
    assert choose_strides(lesions, 2, levels) == [8, 16, 32]
    assert choose_strides(np.concatenate([cells, organs]), 2, levels) == [4, 8, 16, 32]
    assert choose_strides(np.full((9, 3), 10.0), 3, [4, 8, 16]) == [4, 8, 16]
    smear = choose_geometry([(480, 640)] * 3, np.concatenate([cells, lesions]))
    assert (smear["patch"], smear["window"]) == ([256, 256], [480, 640])  # patches, whole-image inference
    small = choose_geometry([(120, 100), (128, 128)], lesions)
    assert small["patch"] == [128, 128]  # small pictures train whole
    photos = choose_geometry([(375, 500), (500, 375), (480, 640)], organs)
    assert photos["patch"] is None
    assert photos["size"] == [480, 512]  # large objects in pictures of many sizes: letterboxed to one size
