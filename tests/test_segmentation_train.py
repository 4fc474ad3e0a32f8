"""Segmentation end to end: training learns, resumes exactly, predicts masks that overlay, evaluates in mm."""

import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from medattn.config import RunConfig, load_config
from medattn.data.phantom import make_segmentation_set
from medattn.data.readers import read_image
from medattn.engine.trainer import fit
from medattn.errors import ConfigError, RunDirError
from medattn.runs import prepare_run_dir
from medattn.tasks import get_task
from medattn.tasks.base import auto_epochs
from medattn.tasks.segment.predict import predict_masks
from medattn.tasks.segment.task import SegmentationTask, build_segmentation_loss, supervised_loss

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
EVALUATE_KEYS = {"dice_mean", "dice_per_class", "iou_per_class", "hd95_mm_per_class", "assd_mm_per_class", "n"}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """40 phantom images (48 x 48 PNG) with organ masks (lesions inside organs count as organ): 0/1 labels."""
    root = tmp_path_factory.mktemp("phantom_seg")
    images, masks = make_segmentation_set(n=40, spatial_dims=2, size=48, seed=0, label_map={"lesion": 1})
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        Image.fromarray((image[0] * 255).astype(np.uint8)).save(root / "images" / f"p{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i:02d}.png")
    return root


def _config(path, **train):
    config = RunConfig()
    config.data.path = str(path)
    config.model.name = "attention_unet"
    config.model.options = {"channels": [8, 16, 32]}
    config.train.batch_size = 8
    config.train.threads = 1  # one thread: the same float sums in every run (and far faster on a busy machine)
    config.train.epochs = train.pop("epochs", 10)
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


@pytest.fixture(scope="module")
def trained(phantom, tmp_path_factory):
    run = prepare_run_dir(tmp_path_factory.mktemp("seg") / "run", resume=False, force=False)
    return run, fit(_config(phantom), run)


def test_2d_phantom_training_learns_and_writes_the_run(trained):
    run, result = trained
    # measured: val Dice 0.81 after 10 epochs (about 8 s on one busy core)
    assert result["val"]["dice"] > 0.7
    for name in ("config.yaml", "model.safetensors", "model.json", "history.csv", "checkpoint/last.pt"):
        assert (run / name).is_file(), name
    card = json.loads((run / "model.json").read_text())
    assert card["task"] == "segmentation"
    assert card["class_names"] == ["background", "foreground"]
    assert card["model"]["name"] == "attention_unet"
    assert card["model"]["spatial_dims"] == 2
    assert card["input"]["patch"] == [48, 48]
    assert card["input"]["spacing_mm"] is None
    assert set(card["input"]["intensity"]) >= {"mode", "mean", "std"}
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(10))
    assert {"val_dice", "val_hd95_mm", "train_loss"} <= set(rows[0])
    saved = load_config(run / "config.yaml")
    assert saved.task == "segmentation"
    assert saved.train.batch_size == 8  # given by the user: never replaced by the task's default (16 in 2D)
    assert saved.train.loss == "dice_ce"
    assert saved.train.select_metric == "dice"


def test_evaluate_scores_the_test_split_in_mm(trained):
    run, _ = trained
    metrics = get_task("segmentation").evaluate(run, data=None, split="test", tta=False)
    assert set(metrics) >= EVALUATE_KEYS
    assert metrics["n"] == 6  # 15% of 40 cases, carved with the run's seed
    assert list(metrics["dice_per_class"]) == ["foreground"]
    assert metrics["dice_mean"] > 0.6
    assert np.isfinite(metrics["hd95_mm_per_class"]["foreground"])
    per_case = [case["pixel_accuracy"] for case in metrics["cases"]]
    assert metrics["pixel_accuracy"] == pytest.approx(np.mean(per_case))
    assert 0.8 < metrics["pixel_accuracy"] <= 1.0  # a foreground Dice above 0.6 on small shapes
    assert "test" in json.loads((run / "metrics.json").read_text())


def test_predict_writes_png_masks_and_never_overwrites(trained, phantom, tmp_path):
    run, _ = trained
    files = [phantom / "images" / "p00.png", phantom / "images" / "p01.png"]
    result = predict_masks(run, files, out_dir=tmp_path)
    for row, file in zip(result["predictions"], files, strict=True):
        mask = np.array(Image.open(row["mask"]))
        assert row["mask"].endswith(f"{file.stem}_mask.png")
        assert mask.shape == (48, 48)
        assert set(np.unique(mask)) <= {0, 1}
        assert row["unit"] == "mm2"
        assert row["volumes"]["foreground"] == pytest.approx(float((mask == 1).sum()))
    truth = np.array(Image.open(phantom / "masks" / "p00.png"))
    first = np.array(Image.open(result["predictions"][0]["mask"]))
    assert 2 * (first & truth).sum() / (first.sum() + truth.sum()) > 0.6
    with pytest.raises(RunDirError, match="already exists"):
        predict_masks(run, files[:1], out_dir=tmp_path)
    predict_masks(run, files[:1], out_dir=tmp_path, overwrite=True)


def test_2d_run_segments_a_volume_slice_by_slice(trained, tmp_path):
    run, _ = trained
    volume = tmp_path / "volume.nii.gz"
    affine = np.diag([0.8, 0.8, 3.0, 1.0])  # thick slices along the last axis
    image = np.zeros((30, 30, 12), np.float32)
    image[8:20, 10:22, :] = 200.0
    nib.save(nib.Nifti1Image(image, affine), str(volume))
    [row] = predict_masks(run, [volume], out_dir=tmp_path / "out")["predictions"]
    assert row["slice_axis"] == 2
    written = nib.load(row["mask"])
    assert written.shape == (30, 30, 12)
    np.testing.assert_allclose(written.affine, affine)
    assert row["unit"] == "ml"  # one volume: its labels measured in ml with the input's spacing


def test_resume_after_interruption_matches_an_uninterrupted_run(phantom, tmp_path, monkeypatch):
    full = prepare_run_dir(tmp_path / "full", resume=False, force=False)
    fit(_config(phantom, epochs=4, seed=5), full)

    real, calls = SegmentationTask.validate, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during epoch 3: epochs 1-2 are checkpointed
        return real(self, *args, **kwargs)

    cut = prepare_run_dir(tmp_path / "cut", resume=False, force=False)
    monkeypatch.setattr(SegmentationTask, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(_config(phantom, epochs=4, seed=5), cut)
    monkeypatch.setattr(SegmentationTask, "validate", real)
    assert not (cut / "model.json").exists()
    fit(load_config(cut / "config.yaml"), cut, resume=True)

    def history(run):
        return [(r["epoch"], r["train_loss"], r["val_dice"]) for r in csv.DictReader((run / "history.csv").open())]

    assert len(history(full)) == 4
    assert history(cut) == history(full)
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_losses_and_deep_supervision():
    from medattn.registry import create_model

    model = create_model(
        "unet", spatial_dims=2, in_channels=1, num_classes=3, options={"channels": [4, 8, 16], "deep_supervision": True}
    )
    x, y = torch.randn(2, 1, 24, 24), torch.randint(0, 3, (2, 24, 24))
    logits = model.train()(x)
    assert len(model.aux_logits) == 1
    for name in ("dice_ce", "focal", "tversky"):
        loss_fn = build_segmentation_loss(name)
        main = loss_fn(logits, y)
        total = supervised_loss(loss_fn, model, logits, y)
        assert torch.isfinite(total)
        assert not torch.isclose(total, main)
        total.backward(retain_graph=True)
        assert model.aux_heads[0].weight.grad is not None
    perfect = torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).float() * 20
    assert float(build_segmentation_loss("dice_ce")(perfect, y)) < 0.01
    with pytest.raises(ConfigError, match="not one of"):
        build_segmentation_loss("ce")


def test_segmentation_config_choices(phantom):
    task = get_task("segmentation")
    config = _config(phantom)
    data = task.load(config)
    patches = task.train_set(config, data)
    config.model.name, config.model.options = None, {}  # None: the task's default model
    resolved = task.resolve(config, data, patches)
    assert resolved.task == "segmentation"
    assert resolved.model.name == "attention_unet"
    assert resolved.train.loss == "dice_ce"
    assert resolved.train.batch_size == 8  # the user's, not the 2D default of 16
    config.train.batch_size = None
    assert task.resolve(config, data, patches).train.batch_size == 16
    config.model.name = "vit"  # a classifier
    with pytest.raises(ConfigError, match="'vit' does not fit segmentation"):
        task.resolve(config, data, patches)
    config.model.name, config.train.loss = "unet", "weighted_ce"
    with pytest.raises(ConfigError, match="not a segmentation loss"):
        task.resolve(config, data, patches)
    config.train.loss, config.train.sampler = None, "balanced"
    with pytest.raises(ConfigError, match=r"train.sampler \(--sampler\) = 'balanced' means nothing to segmentation"):
        task.resolve(config, data, patches)
    config.train.sampler, config.data.size = None, [32, 32]
    with pytest.raises(ConfigError, match=r"data.size \(--size\)"):
        task.resolve(config, data, patches)
    config.data.size, config.train.epochs = None, 0
    expected = auto_epochs(4000, len(patches), low=10, high=100)
    assert task.resolve(config, data, patches).train.epochs == expected


def test_masks_come_back_on_the_input_grid_when_the_model_resamples():
    from medattn.data.meta import ImageMeta
    from medattn.data.preprocess import Intensity
    from medattn.registry import create_model
    from medattn.tasks.segment.inference import SegmentationPlan, segment

    model = create_model("unet", spatial_dims=3, in_channels=1, num_classes=3, options={"channels": [4, 8]}).eval()
    plan = SegmentationPlan(
        spatial_dims=3, in_channels=1, num_classes=3, patch=[16, 16, 16], spacing=[1.0, 1.0, 1.0], intensity=Intensity()
    )
    image = np.random.default_rng(0).random((1, 9, 20, 13)).astype(np.float32)
    meta = ImageMeta(spacing=(3.0, 0.5, 1.0), affine=np.diag([3.0, 0.5, 1.0, 1.0]))  # model sees (27, 10, 13)
    labels = segment(model, image, meta, plan, device=torch.device("cpu"), where="x.nii.gz")
    assert labels.shape == (9, 20, 13)
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}


def _medattn(*args):
    result = subprocess.run(
        [sys.executable, "-m", "medattn", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_infers_the_task_from_masks_and_reports_json(phantom, tmp_path):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model: {name: unet, options: {channels: [8, 16, 32]}}\ntrain: {batch_size: 8, threads: 1}\n")
    run = tmp_path / "run"
    result = _medattn(
        "train", "--data", phantom, "--out", run, "--epochs", "2", "--patch", "32", "--config", tiny, "--json"
    )
    assert result["task"] == "segmentation"
    assert result["epochs_run"] == 2
    assert "dice" in result["val"]
    assert json.loads((run / "model.json").read_text())["input"]["patch"] == [32, 32]
    metrics = _medattn("evaluate", run, "--data", phantom, "--json")
    assert set(metrics) >= EVALUATE_KEYS
    assert metrics["n"] == 6
    masks = _medattn("predict", run, phantom / "images" / "p03.png", "--json")
    assert masks["predictions"][0]["mask"] == str(run / "predictions" / "p03_mask.png")


def _hippocampus_subset(shared_data, root, n):
    source = shared_data / "msd_hippocampus"
    spec = json.loads((source / "dataset.json").read_text())
    spec["training"] = [{k: str(source / v) for k, v in entry.items()} for entry in spec["training"][:n]]
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


@pytest.mark.slow
def test_3d_hippocampus_learns_and_masks_overlay(shared_data, tmp_path):
    data = _hippocampus_subset(shared_data, tmp_path / "hippo", 30)
    config = _config(data, epochs=3)
    config.model.options = {"channels": [8, 16, 32, 64]}
    config.train.batch_size = 2
    run = prepare_run_dir(tmp_path / "run", resume=False, force=False)
    result = fit(config, run)
    # measured: val Dice 0.79 (Anterior 0.76, Posterior 0.82) after 3-4 epochs on 21 volumes, about 25 s here
    assert result["val"]["dice"] > 0.6
    card = json.loads((run / "model.json").read_text())
    assert card["class_names"] == ["background", "Anterior", "Posterior"]
    assert card["input"]["patch"] == [32, 48, 32]
    assert card["input"]["spacing_mm"] == [1.0, 1.0, 1.0]
    image = shared_data / "msd_hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    [row] = predict_masks(run, [image], out_dir=tmp_path / "masks")["predictions"]
    written, source = nib.load(row["mask"]), nib.load(str(image))
    np.testing.assert_allclose(written.affine, source.affine)
    assert written.shape == source.shape
    assert row["unit"] == "ml"
    assert set(np.unique(np.asarray(written.dataobj))) == {0, 1, 2}
    series = shared_data / "dicom" / "tcia_brain_tumor_progression_PGBM-003" / "HippoCrop"  # a DICOM series folder
    [row] = predict_masks(run, [series], out_dir=tmp_path / "masks")["predictions"]
    assert row["mask"].endswith("HippoCrop_mask.nii.gz")
    volume, meta = read_image(series)
    written = nib.load(row["mask"])
    np.testing.assert_allclose(written.affine, meta.affine, atol=1e-4)  # float32 in the NIfTI header
    assert written.shape == volume.shape[1:]
    metrics = get_task("segmentation").evaluate(run, data=None, split="test", tta=False)
    assert set(metrics) >= EVALUATE_KEYS
    assert metrics["n"] == 5  # 15% of 30 cases, rounded up
    assert all(np.isfinite(v) for v in metrics["hd95_mm_per_class"].values())


def test_flags_are_kept_or_refused_never_replaced(phantom, tmp_path):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model: {name: unet, options: {channels: [8, 16]}}\ntrain: {threads: 1}\n")
    run = tmp_path / "run"
    _medattn(
        "train", "--data", phantom, "--out", run, "--epochs", "1", "--batch-size", "16", "--config", tiny, "--json"
    )
    saved = load_config(run / "config.yaml")
    assert saved.train.batch_size == 16
    assert saved.task == "segmentation"
    assert saved.train.sampler is None  # means nothing here: recorded as unset, not as a classification default
    for flag, value, field in (
        ("--sampler", "balanced", "train.sampler"),
        ("--threshold", "youden", "train.threshold"),
        ("--size", "32", "data.size"),
        ("--labels", "binary", "data.labels"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "medattn", "train", "--data", phantom, "--out", tmp_path / "x", flag, value],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        assert result.returncode == 2
        assert f"{field} ({flag})" in result.stderr
        assert "means nothing to segmentation" in result.stderr
    assert not (tmp_path / "x").exists()


def test_cross_validation_writes_fold_dice_and_an_ensemble_evaluate_scores(phantom, tmp_path):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model: {name: unet, options: {channels: [8, 16, 32]}}\ntrain: {threads: 1, batch_size: 8}\n")
    out = tmp_path / "cv"
    result = _medattn(
        "tune", "cv", "--data", phantom, "--folds", "2", "--epochs", "6", "--config", tiny, "--out", out, "--json"
    )
    assert result["task"] == "segmentation"
    assert result["metric"] == "dice"
    assert [row["run"] for row in result["folds"]] == ["fold-0-0", "fold-0-1"]
    assert all(0.0 < row["dice"] <= 1.0 for row in result["folds"])
    assert result["mean"]["dice"] == pytest.approx(np.mean([row["dice"] for row in result["folds"]]))
    assert result["settings"]["pooled_cases"] == 34  # 40 cases less the 6 carved for test, which CV never sees
    metrics = _medattn("evaluate", out, "--json")
    assert metrics["ensemble"]["members"] == 2
    assert metrics["n"] == 6
    assert metrics["dice_mean"] > 0.3
    tta = _medattn("evaluate", out, "--tta", "--json")
    assert tta["tta"] is True
    masks = _medattn("predict", out, phantom / "images" / "p00.png", "--tta", "--json")
    assert masks["predictions"][0]["mask"].endswith("p00_mask.png")


def test_data_inspect_reports_masks_and_leakage(shared_data, tmp_path):
    data = _hippocampus_subset(shared_data, tmp_path / "hippo", 12)
    report = _medattn("data", "inspect", data, "--json")
    assert report["task"] == "segmentation"
    assert report["splits"] == {"train": 12}
    assert list(report["labels"]) == ["background", "Anterior", "Posterior"]
    assert report["labels"]["Anterior"]["cases"] == 12
    assert sum(row["fraction"] for row in report["labels"].values()) == pytest.approx(1.0)
    assert 0 < report["foreground_fraction"]["median"] < 0.2
    assert report["empty_masks"]["count"] == 0
    assert report["patients"] is None
    assert len(report["images"]["spacing_mm"]) >= 1


def test_init_transfers_a_segmenter_with_a_fresh_head(trained, phantom, tmp_path):
    source, _ = trained
    config = _config(phantom, epochs=1)
    config.model.init = str(source)
    run = prepare_run_dir(tmp_path / "fine", resume=False, force=False)
    fit(config, run)
    card = json.loads((run / "model.json").read_text())
    assert any(note.startswith("initialised") and str(source) in note for note in card["training_data"]["notes"])
    config.model.options = {"channels": [8, 16]}  # another architecture
    with pytest.raises(ConfigError, match="do not match"):
        fit(config, prepare_run_dir(tmp_path / "other", resume=False, force=False))


def test_a_csv_of_volumes_stored_in_mixed_types_trains_whatever_comes_first(shared_data, tmp_path):
    """MSD Hippocampus stores some volumes as float32 and others as uint8: the recipe comes from all of them."""
    root = shared_data / "msd_hippocampus"
    spec = json.loads((root / "dataset.json").read_text())
    pairs = [(root / e["image"], root / e["label"]) for e in spec["training"][:40]]
    kinds = {p: nib.load(str(p[0])).get_data_dtype().kind for p in pairs}
    floats = [p for p in pairs if kinds[p] == "f"][:5]
    integers = [p for p in pairs if kinds[p] != "f"][:5]
    assert floats
    assert integers
    manifest = tmp_path / "cases.csv"
    manifest.write_text("image,mask\n" + "".join(f"{a},{b}\n" for a, b in floats + integers))  # a float32 first
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model: {name: unet, options: {channels: [8, 16]}}\ntrain: {threads: 1, batch_size: 2}\n")
    run = tmp_path / "run"
    result = _medattn("train", "--data", manifest, "--out", run, "--epochs", "1", "--config", tiny, "--json")
    assert any("stored as float32, uint8: intensity mode minmax" in note for note in result["notes"])
    metrics = _medattn("evaluate", run, "--json")
    assert metrics["n"] == 2
    masks = _medattn("predict", run, floats[0][0], integers[0][0], "--out-dir", tmp_path / "masks", "--json")
    assert len(masks["predictions"]) == 2


def test_every_intensity_mode_gives_float32_whatever_the_stored_type():
    from medattn.data.preprocess import choose_intensity, to_unit

    assert choose_intensity("auto", [np.dtype("uint8"), np.dtype("float32")]).mode == "minmax"
    assert choose_intensity("auto", [np.dtype("uint8")]).mode == "scale"
    assert choose_intensity("mr", ["float32", "uint8"]).mode == "mr"
    for mode in ("scale", "ct", "mr", "minmax"):
        for dtype in (np.uint8, np.int16, np.float32, np.float64):
            image = (np.random.default_rng(0).random((1, 6, 7)) * 100).astype(dtype)
            intensity = choose_intensity("auto", dtype)
            intensity.mode = mode
            assert to_unit(image, intensity).dtype == np.float32, (mode, dtype)
