"""The command line as users and other tools call it: exact names, flags, --json contracts, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.data.phantom import save_medmnist_npz

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def medattn(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "medattn", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"medattn {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "phantom.npz"
    save_medmnist_npz(data, n_train=120, n_val=40, n_test=50, spatial_dims=2, size=20, num_classes=2, seed=2)
    config = root / "tiny.yaml"
    config.write_text("model: {name: attn_resnet, options: {widths: [8, 16, 32]}}\ntrain: {batch_size: 32}\n")
    result = medattn("train", "--data", data, "--out", root / "run", "--epochs", "2", "--config", config, "--json")
    return root, data, json.loads(result.stdout)


def test_help_does_not_import_torch():
    code = "import sys, medattn.cli; print('torch' in sys.modules, 'monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    help_text = medattn("--help").stdout
    for command in ("train", "evaluate", "predict", "models", "demo"):
        assert command in help_text


def test_train_json_is_one_object(trained):
    _, _, result = trained
    assert result["epochs_run"] == 2
    assert set(result["val"]) >= {"auc", "acc"}


def test_evaluate_json(trained):
    root, data, _ = trained
    out = medattn("evaluate", root / "run", "--data", data, "--split", "test", "--json")
    metrics = json.loads(out.stdout)  # stdout holds exactly one JSON object
    assert {"auc", "acc", "balanced_acc", "ece", "n"} <= set(metrics)
    assert metrics["n"] == 50
    assert 0.0 <= metrics["auc"] <= 1.0
    assert metrics["auc_ci"][0] <= metrics["auc"] <= metrics["auc_ci"][1]
    assert "test" in json.loads((root / "run" / "metrics.json").read_text())


def test_predict_png_files(trained, tmp_path):
    root, data, _ = trained
    images = np.load(data)["test_images"][:2]
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"case{i}.png")
        Image.fromarray(image).save(files[-1])
    out = json.loads(medattn("predict", root / "run", *files, "--json").stdout)
    assert [Path(p["file"]).name for p in out["predictions"]] == ["case0.png", "case1.png"]
    for row in out["predictions"]:
        assert row["class"] in ("0", "1")
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_models_json_lists_every_model_with_parameters():
    out = json.loads(medattn("models", "--json").stdout)
    names = {row["name"]: row["parameters"] for row in out["models"]}
    assert {"cnn", "resnet18", "attn_resnet", "hybrid", "vit"} <= set(names)
    assert names["resnet18"] == pytest.approx(11.17e6, rel=0.002)
    tasks = {row["name"]: row["tasks"] for row in out["models"]}
    assert tasks["attn_resnet"] == ["classification", "regression"]
    assert tasks["attention_unet"] == ["segmentation"]
    rows = {row["name"]: row for row in out["models"]}
    assert rows["densenet121"]["source"] == "MONAI"
    assert rows["vgg16"]["source"] == "medattn"
    assert rows["deeplabv3plus"]["dims"] == [2, 3]
    zoo = {"alexnet", "vgg11", "vgg16", "googlenet", "resnet34", "resnet50", "se_resnet50", "mobilenet_v1"}
    zoo |= {"mobilenet_v2", "efficientnet_b0", "densenet121", "swin", "seed_cnn"}
    zoo |= {"fcn", "deeplabv3plus", "unetr", "swin_unetr", "segresnet"}
    assert zoo <= set(rows)
    three = json.loads(medattn("models", "--dims", "3", "--channels", "2", "--classes", "4", "--json").stdout)
    assert three["input"] == {"spatial_dims": 3, "channels": 2, "classes": 4}
    assert {r["name"]: r["parameters"] for r in three["models"]}["resnet18"] > names["resnet18"]  # 3x3x3 kernels


def test_tasks_json_lists_the_registered_tasks():
    out = json.loads(medattn("tasks", "--json").stdout)
    rows = {row["name"]: row for row in out["tasks"]}
    assert set(rows) == {
        "classification",
        "regression",
        "segmentation",
        "detection",
        "translation",
        "mil",
        "synthesis",
        "multitask",
    }
    assert rows["multitask"]["models"] == ["multitask_unet"]
    assert "data.heads" in rows["multitask"]["options"]
    assert rows["synthesis"]["models"] == ["ddpm_unet"]
    assert "data.synthetic" in rows["classification"]["options"]
    assert "dice_ce" in rows["segmentation"]["losses"]
    assert rows["detection"]["models"] == ["detect_anchorfree", "faster_rcnn"]
    assert "data.drop_bad_boxes" in rows["detection"]["options"]
    assert "data.patch" in rows["segmentation"]["options"]
    assert "attn_resnet" in rows["regression"]["models"]
    assert rows["mil"]["models"] == ["attention_mil"]
    assert "data.clinical" in rows["mil"]["options"]


def test_unknown_model_name_suggests_close_matches(trained, tmp_path):
    _, data, _ = trained
    result = medattn("train", "--data", data, "--out", tmp_path / "r", "--model", "atn_resnet", check=False)
    assert result.returncode == 2
    assert "attn_resnet" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_existing_run_needs_resume_or_force(trained):
    root, data, _ = trained
    result = medattn("train", "--data", data, "--out", root / "run", check=False)
    assert result.returncode == 2
    assert "--resume" in result.stderr
    assert "--force" in result.stderr
    assert (root / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "{tmp}/missing-run"], "not a finished medattn run"),
        (["train", "--data", "{tmp}/nothing.npz", "--out", "{tmp}/r2"], "does not exist"),
        (["train", "--data", "{data}", "--out", "{tmp}/r3", "--size", "big"], "--size"),
        (["train", "--data", "{data}", "--out", "{tmp}/r4", "--loss", "hinge"], "train.loss"),
        (["train", "--data", "{data}", "--out", "{tmp}/r6", "--loss", "dice_ce"], "not a classification loss"),
        (["train", "--data", "{data}", "--out", "{tmp}/r7", "--patch", "16"], "data.patch (--patch)"),
        (["train", "--data", "{data}", "--out", "{tmp}/r8", "--task", "segmentaton"], "did you mean segmentation"),
        (["predict", "{run}", "{tmp}/missing.png", "--out-dir", "{tmp}"], "--out-dir means nothing"),
        (["train", "--data", "{tmp}/empty", "--out", "{tmp}/r5"], "empty folder"),
        (["evaluate", "{run}", "--data", "{data}", "--split", "holdout"], "no 'holdout' split"),
        (["predict", "{run}", "{tmp}/missing.png"], "no such file"),
    ],
)
def test_bad_arguments_fail_cleanly(trained, tmp_path, args, message):
    root, data, _ = trained
    (tmp_path / "empty").mkdir()
    result = medattn(*[a.format(tmp=tmp_path, data=data, run=root / "run") for a in args], check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_training_leaves_no_run_directory(trained, tmp_path):
    _, data, _ = trained
    bad = tmp_path / "mismatch.npz"
    np.savez(bad, train_images=np.zeros((6, 8, 8), np.uint8), train_labels=np.zeros((5, 1), np.int64))
    result = medattn("train", "--data", bad, "--out", tmp_path / "run", check=False)
    assert result.returncode == 2
    assert "6 images but 5 labels" in result.stderr
    assert not (tmp_path / "run").exists()


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")
def test_predict_real_dicom_files_and_a_volume_slice_by_slice(trained):
    root, _, _ = trained
    files = [SHARED / "dicom" / "pydicom_testfiles" / n for n in ("MR_small.dcm", "CT_small.dcm")]
    out = json.loads(medattn("predict", root / "run", *files, "--json").stdout)
    assert [row["modality"] for row in out["predictions"]] == ["MR", "CT"]
    assert all(sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5) for row in out["predictions"])
    volume = SHARED / "nifti" / "nibabel_testdata" / "anatomical.nii"  # (33, 41, 25), 3 x 3 x 3 mm
    [row] = json.loads(medattn("predict", root / "run", volume, "--json").stdout)["predictions"]
    slices = row["slices"]  # a 2D model reads a volume slice by slice, as nnU-Net's 2d configuration does
    assert slices["axis"] == 2  # equal spacing: the axis with the fewest voxels
    assert slices["count"] == 25 == len(slices["per_slice"])
    mean = np.mean([s["1"] for s in slices["per_slice"]])
    assert row["probabilities"]["1"] == pytest.approx(mean, abs=1e-6)  # the volume's decision: the mean
    assert slices["max_probabilities"]["1"] >= mean


def test_predict_picks_one_series_of_a_folder_with_several(trained, tmp_path):
    import shutil

    import pydicom

    root, _, _ = trained
    series = SHARED / "dicom" / "tcia_brain_tumor_progression_PGBM-003"
    for source in (series / "T1post" / "000000.dcm", series / "HippoCrop" / "1.dcm"):
        shutil.copy(source, tmp_path / f"{source.parent.name}.dcm")
    uid = str(pydicom.dcmread(tmp_path / "T1post.dcm", stop_before_pixels=True).SeriesInstanceUID)
    refused = medattn("predict", root / "run", tmp_path, check=False)
    assert refused.returncode == 2
    assert "holds 2 series" in refused.stderr
    assert "pick one with --series UID" in refused.stderr
    assert f"{uid} (" in refused.stderr  # each series listed with its description, modality and size
    picked = json.loads(medattn("predict", root / "run", tmp_path, "--series", uid, "--json").stdout)
    assert len(picked["predictions"]) == 1  # one slice of the chosen series: a 2D image the 2D model takes
    wrong = medattn("predict", root / "run", tmp_path / "T1post.dcm", "--series", uid, check=False)
    assert "picks a series inside a DICOM folder" in wrong.stderr


@pytest.mark.slow
def test_demo_trains_evaluates_and_says_where(tmp_path):
    out = tmp_path / "demo"
    result = json.loads(medattn("demo", "--out", out, "--json").stdout)
    assert result["classification"]["auc"] > 0.85
    assert Path(result["outputs"]) == out.resolve()
    assert (out / "classification" / "metrics.json").is_file()
    segmentation = result["segmentation"]
    assert segmentation["dice_per_class"]["organ"] > 0.75  # measured 0.87 after 25 epochs
    assert Path(segmentation["prediction"]["mask"]).is_file()
    assert result["regression"]["r2"] > 0.3  # the organ area of 32-pixel phantoms
    assert (out / "regression" / "calibration-test.png").is_file()
    assert (out / "segmentation" / "model.safetensors").is_file()
    again = medattn("demo", "--out", out, check=False)
    assert again.returncode == 2
    assert "--force" in again.stderr
