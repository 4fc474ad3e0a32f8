"""Every input a user can give: each task × its data layouts × 2D and 3D × stored types × modality declared or
left to medattn. Each cell writes a tiny set (tests/matrix_sets.py), trains one epoch, evaluates and predicts
in this process; any exception, typed or not, fails the cell with its traceback.

Then 2D models given volumes: evaluate and predict slice by slice, along the card's axis or --slice-axis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.detection_sets import detection_set
from tests.matrix_sets import classification_set, regression_set, segmentation_set, write_file
from tests.run_cli import invoke
from typer.testing import CliRunner

from medattn.cli import app

TINY = {
    "classification": "model: {options: {widths: [8, 16], depths: [1, 1]}}\n",
    "segmentation": "model: {name: unet, options: {channels: [8, 16]}}\n",
    "regression": "model: {options: {widths: [8, 16], depths: [1, 1]}}\n",
    "detection": "model: {options: {widths: [8, 16, 32], depths: [1, 1, 1], channels: 16, head_depth: 1}}\n",
}
BUILD = {
    "classification": classification_set,
    "segmentation": segmentation_set,
    "regression": regression_set,
    "detection": detection_set,
}
LAYOUTS = {
    "classification": ("folders", "csv", "npz", "dicom"),
    "segmentation": ("folders", "csv", "msd", "dicom"),
    "regression": ("csv", "npz", "dicom"),
    "detection": ("csv", "voc", "coco", "yolo", "monai", "dicom"),
}
PICTURES = ("voc", "coco", "yolo")  # 2D colour or gray pictures of 8 bits
DTYPES = ("uint8", "int16", "float32", "float64", "mixed")
DECLARED = {"int16": "ct"}  # the modality a user would declare for each type (the rest: MR)


def _cells():
    for task, layouts in LAYOUTS.items():
        for layout in layouts:
            for dims in (2, 3):
                for dtype in DTYPES:
                    if layout == "npz" and dtype == "mixed":
                        continue  # one array holds one type
                    if layout == "dicom" and dtype not in ("uint8", "int16"):
                        continue  # DICOM stores integers (floats only in parametric maps)
                    if (layout in PICTURES and (dims, dtype) != (2, "uint8")) or (layout == "monai" and dims == 2):
                        continue  # picture formats hold 8-bit pictures; MONAI's detection JSON lists volumes
                    for modality in ("auto", "declared"):
                        if task == "detection" and layout != "csv" and modality == "declared":
                            continue  # box data: the CSV cells declare the modality for every stored type
                        yield pytest.param(
                            task, layout, dims, dtype, modality, id=f"{task}-{layout}-{dims}d-{dtype}-{modality}"
                        )


def _config(tmp_path: Path, task: str, extra: str = "") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY[task] + "train: {threads: 1, epochs: 1, batch_size: 4}\n" + extra)
    return path


def _one_file(tmp_path: Path, dims: int, dtype: str) -> Path:
    from tests.matrix_sets import item

    image, _, _ = item(1, dims, "float32" if dtype == "mixed" else dtype, present=True, rng=np.random.default_rng(5))
    return write_file(tmp_path / "predict", "one", image, layout="nifti", modality="auto")


@pytest.mark.parametrize(("task", "layout", "dims", "dtype", "modality"), list(_cells()))
def test_cell_trains_evaluates_and_predicts(task, layout, dims, dtype, modality, tmp_path: Path):
    declared = DECLARED.get(dtype, "mr") if modality == "declared" else "auto"
    data = BUILD[task](tmp_path, layout, dims, dtype, declared)
    args = ["train", "--data", data, "--out", tmp_path / "run", "--config", _config(tmp_path, task), "--json"]
    if declared != "auto" and layout != "msd":  # MSD declares it in dataset.json
        args += ["--modality", declared]
    if layout == "monai":  # MONAI's detection JSON does not say how its boxes are written
        args += ["--box-format", "xyzxyz", "--box-space", "voxel"]
    trained = invoke(*args)
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["model"]["spatial_dims"] == dims, "a 2D set stored as one-slice NIfTI is still 2D"
    intensity = card["input"]["intensity"]
    if dtype == "mixed":
        assert intensity["mode"] != "scale", "a set mixing uint8 and float32 files has no one type maximum"
    if declared == "ct":
        assert intensity["mode"] == "ct"
    assert np.isfinite(trained.get("best_score", 0.0))
    metrics = invoke("evaluate", tmp_path / "run", "--split", "test", "--json")
    assert metrics["split"] == "test"
    out = ["--out-dir", tmp_path / "masks"] if task == "segmentation" else []
    predicted = invoke("predict", tmp_path / "run", _one_file(tmp_path, dims, dtype), *out, "--json")
    assert len(predicted["predictions"]) == 1


# ---- 2D models on volumes -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slice_trained(tmp_path_factory) -> dict:
    """A 2D classifier, regressor and segmenter, trained on 16x16 images; the classifier records slice axis 0."""
    runs = {}
    for task in ("classification", "regression", "segmentation"):
        root = tmp_path_factory.mktemp(task)
        data = BUILD[task](root, "csv", 2, "float32", "auto")
        extra = "data: {slice_axis: 0}\n" if task == "classification" else ""
        invoke("train", "--data", data, "--out", root / "run", "--config", _config(root, task, extra), "--json")
        runs[task] = root / "run"
    return runs


def _volumes(root: Path, task: str) -> Path:
    """The same kind of set as 3D volumes of 16x16 slices (12 along the last axis)."""
    return BUILD[task](root, "csv", 3, "float32", "auto")


def test_2d_classifier_evaluates_and_predicts_volumes_slice_by_slice(slice_trained, tmp_path: Path):
    run = slice_trained["classification"]
    card = json.loads((run / "model.json").read_text())
    assert card["input"]["slice_axis"] == 0  # recorded from data.slice_axis
    data = _volumes(tmp_path, "classification")
    metrics = invoke("evaluate", run, "--data", data, "--split", "train", "--json")
    assert metrics["n"] == 20
    volume = sorted((tmp_path / "images").glob("*.nii.gz"))[0]
    along_card = invoke("predict", run, volume, "--json")["predictions"][0]["slices"]
    assert (along_card["axis"], along_card["count"]) == (0, 12)
    along_flag = invoke("predict", run, volume, "--slice-axis", "2", "--json")["predictions"][0]["slices"]
    assert (along_flag["axis"], along_flag["count"]) == (2, 12)
    assert along_flag["per_slice"] != along_card["per_slice"]


def test_2d_regressor_evaluates_volumes_slice_by_slice(slice_trained, tmp_path: Path):
    run = slice_trained["regression"]
    data = _volumes(tmp_path, "regression")
    metrics = invoke("evaluate", run, "--data", data, "--split", "train", "--slice-axis", "1", "--json")
    assert metrics["n"] == 20
    assert np.isfinite(metrics["mae"])


def test_2d_segmenter_writes_one_volume_on_the_input_grid(slice_trained, tmp_path: Path):
    import nibabel as nib

    run = slice_trained["segmentation"]
    _volumes(tmp_path, "segmentation")
    volume = sorted((tmp_path / "set" / "images").glob("*.nii.gz"))[0]
    row = invoke("predict", run, volume, "--slice-axis", "1", "--out-dir", tmp_path / "out", "--json")["predictions"][0]
    assert row["slice_axis"] == 1
    written = nib.load(row["mask"])
    assert written.shape == nib.load(volume).shape
    np.testing.assert_allclose(written.affine, nib.load(volume).affine)


def test_slice_axis_is_refused_by_a_3d_model_and_checked(slice_trained, tmp_path: Path):
    from medattn.errors import ConfigError

    run = slice_trained["classification"]
    result = CliRunner().invoke(app, ["predict", str(run), "x.nii.gz", "--slice-axis", "3"])
    assert isinstance(result.exception, ConfigError)
    assert "expected 0, 1 or 2" in str(result.exception)


# ---- several DICOM series in each study folder ---------------------------------------------------------------


def test_series_by_description_through_train_evaluate_and_predict(tmp_path: Path):
    """Each study folder holds a T1 and a FLAIR series; `--series FLAIR` trains on FLAIR, evaluate and predict
    read the same series by default (the run's data.series), and a wrong name lists what is there."""
    from tests.matrix_sets import item, write_dicom

    from medattn.errors import ReadError

    rng = np.random.default_rng(3)
    for i in range(20):
        folder = tmp_path / "set" / ("negative", "positive")[i % 2] / f"study{i:02d}"
        flair, _, _ = item(i, 3, "int16", present=i % 2 == 1, rng=rng)
        write_dicom(folder, flair[0], modality="mr", description="FLAIR")
        write_dicom(folder, np.zeros_like(flair[0]), modality="mr", description="T1")  # carries no signal
    data, run = tmp_path / "set", tmp_path / "run"
    invoke(
        "train",
        "--data",
        data,
        "--out",
        run,
        "--series",
        "flair",
        "--config",
        _config(tmp_path, "classification"),
        "--json",
    )
    metrics = invoke("evaluate", run, "--json")
    assert metrics["n"] >= 2
    study = tmp_path / "set" / "positive" / "study01"
    assert invoke("predict", run, study, "--json")["predictions"][0]["class"] in ("negative", "positive")
    assert invoke("predict", run, study, "--series", "T1", "--json")["predictions"]
    result = CliRunner().invoke(app, ["predict", str(run), str(study), "--series", "T2"])
    assert isinstance(result.exception, ReadError)
    message = str(result.exception)
    assert "no series 'T2' here" in message
    assert "(FLAIR, MR, 12 file(s) of 12x12)" in message
    assert "(T1, MR, 12 file(s) of 12x12)" in message
    assert "--series takes a UID or a description" in message
