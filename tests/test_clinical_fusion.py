"""Clinical values beside the image for classification and regression (models/clinical.py, data/clinical_images.py):
the wrapper over any registered classifier in 2D and 3D, a label only the table knows (the clinical path must carry
it, the image-only path cannot), real lgg_mri grades and ages with and without the table, and the errors."""

import csv
import json
import random

import numpy as np
import pytest
import torch
from tests.run_cli import invoke
from tests.run_cli import run as medattn
from typer.testing import CliRunner

from medattn.cli import app
from medattn.engine.inputs import MISSING, apply_missing
from medattn.errors import ConfigError, DataError
from medattn.registry import create_model

AGE, SEX, GRADE = "age_at_initial_pathologic", "gender", "neoplasm_histologic_grade"
SMALL = {"widths": [8, 16], "depths": [1, 1], "stem_stride": 2, "attention": "se"}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", ["attn_resnet", "hybrid", "unet"])
def test_wrapper_fits_classifiers_and_segmenters_in_2d_and_3d(name, dims):
    torch.manual_seed(0)
    x, clinical = torch.randn(2, 1, *[16] * dims), torch.tensor([[1.5, 0.0, 1.0], [-1.0, 0.0, 0.0]])
    missing = [0.0, 1.0, 0.0]
    options = {"attn_resnet": SMALL, "unet": {"channels": [8, 16]}}.get(name, {})
    for fusion in ("film", "concat") if name != "unet" else ("film",):  # a segmenter takes FiLM only
        tabular = {"width": 3, "fusion": fusion, "missing": missing}
        model = create_model(
            name, spatial_dims=dims, in_channels=1, num_classes=2, options={**options, "tabular": tabular}
        )
        model.eval()
        with torch.no_grad():
            given, swapped = model(x, clinical), model(x, clinical.flip(0))
            alone, stated = model(x), model(x, torch.tensor([missing] * 2))
        torch.testing.assert_close(alone, stated)  # the image alone is the all-unknown vector
        assert torch.allclose(given, swapped) == (fusion == "film")  # FiLM starts as the identity; concat reads
        model.train()
        model(x, clinical).sum().backward()
        assert next(model.fusion.embed.parameters()).grad.abs().sum() > 0  # the clinical path learns
        again = create_model(name, spatial_dims=dims, in_channels=1, num_classes=2, options=model.config["options"])
        again.load_state_dict(model.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(again.eval()(x, clinical), model.eval()(x, clinical))
    token = MISSING.set(("clinical",))
    try:
        assert apply_missing(model, (x, clinical)) is x  # `--missing clinical`: the image-only path
        with pytest.raises(DataError, match="trained with --clinical"):
            apply_missing(create_model(name, spatial_dims=dims, in_channels=1, num_classes=2, options=options), x)
    finally:
        MISSING.reset(token)


def test_clinical_values_beside_named_modalities():
    x, clinical = torch.randn(2, 2, 16, 16), torch.randn(2, 3)
    fused = {"modalities": ["t1", "flair"], "tabular": {"width": 3, "fusion": "film"}}
    for name, fusion in (("unet", "early"), ("attn_resnet", "hemis")):
        options = {**fused, "fusion": fusion, **({"channels": [8, 16]} if name == "unet" else SMALL)}
        model = create_model(name, spatial_dims=2, in_channels=2, num_classes=2, options=options)
        assert model(x, clinical).shape[:2] == (2, 2)
        token = MISSING.set(("flair", "clinical"))
        try:
            images = apply_missing(model, (x, clinical))  # flair made absent, the clinical vector dropped
        finally:
            MISSING.reset(token)
        assert torch.isnan(images[:, 1]).all()
        assert not torch.isnan(images[:, 0]).any()
    with pytest.raises(ConfigError, match="early, hemis or cross_attention"):
        create_model("attn_resnet", spatial_dims=2, in_channels=2, num_classes=2, options={**fused, "fusion": "late"})


def test_clinical_dropout_blanks_whole_vectors_and_batches_carry_them():
    from medattn.config import RunConfig
    from medattn.data.clinical_images import ClinicalDropout
    from medattn.tasks.classify.train_set import ClassTrainSet

    missing = torch.tensor([0.0, 1.0, 0.0])
    clinical = torch.tensor([[2.0, 0.0, 1.0]]).repeat(1000, 1)
    dropped = ClinicalDropout(missing, 0.25, seed=0)(clinical)
    blank = (dropped == missing).all(dim=1)
    assert ((dropped == clinical).all(dim=1) | blank).all()  # a row is kept whole or blanked whole
    assert 0.2 < blank.float().mean() < 0.3
    train = ClassTrainSet(torch.randn(8, 1, 8, 8), torch.arange(8) % 2, num_classes=2, seed=0, clinical=clinical[:8])
    config = RunConfig()
    config.data.augment = []
    config.train.sampler, config.train.clinical_dropout = "shuffle", 0.5
    config.model.options = {"tabular": {"width": 3, "fusion": "film", "missing": missing.tolist()}}
    train.configure(config)
    (images, vectors), _ = train.batch(torch.arange(8))
    assert images.shape == (8, 1, 8, 8)
    assert vectors.shape == (8, 3)
    assert "clinical_dropout" in train.generators  # checkpointed with the run, so a resume is exact


def _marker_data(root, tmp_path):
    """Every 8th lgg_mri slice labelled by a random per-patient marker only the table holds (3 patients left out
    of it); patients split 2:1:2 into train, val and test, stratified by the marker."""
    patients = sorted({r["patient_id"] for r in csv.DictReader((root / "clinical.csv").open())})
    rng = random.Random(0)
    marker = {p: rng.random() for p in patients}
    split = {
        p: ("train", "train", "val", "test", "test")[i % 5] for i, p in enumerate(sorted(patients, key=marker.get))
    }
    table = tmp_path / "marker.csv"
    table.write_text(
        "patient_id,marker,sex\n" + "".join(f"{p},{marker[p]:.4f},{rng.choice('FM')}\n" for p in patients[3:])
    )
    slices = list(csv.DictReader((root / "manifest.csv").open()))[::8]
    data = tmp_path / "marker_data.csv"
    data.write_text(
        "path,label,patient_id,split\n"
        + "".join(
            f"{root / 'images' / s['file']},{int(marker[s['patient_id']] > 0.5)},{s['patient_id']},"
            f"{split[s['patient_id']]}\n"
            for s in slices
        )
    )
    return data, table, patients[:3]


@pytest.fixture(scope="module")
def marker_run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("marker")
    data, table, absent = _marker_data(shared_data / "lgg_mri", tmp)
    run = tmp / "run"
    medattn(
        "train", "--data", data, "--out", run, "--model", "cnn", "--size", "32", "--batch-size", "16",
        "--epochs", "10", "--clinical", table, "--clinical-columns", "marker,sex", "--clinical-fusion", "film",
    )  # fmt: skip
    return run, table, absent


def test_a_label_only_the_table_knows_needs_the_clinical_path(marker_run, shared_data):
    run, table, _ = marker_run
    card = json.loads((run / "model.json").read_text())
    assert card["clinical"]["features"] == ["marker", "marker missing", "sex=F", "sex=M", "sex missing"]
    assert card["model"]["options"]["tabular"]["missing"] == [0, 1, 0, 0, 1]
    assert sum(card["clinical"]["absent_patients"].values()) >= 1  # counted, not an error
    assert any("not in the clinical table" in note for note in card["training_data"]["notes"])
    assert "clinical_dropout: 0.2" in (run / "config.yaml").read_text()
    full = invoke("evaluate", run, "--json")
    alone = invoke("evaluate", run, "--missing", "clinical", "--json")
    assert full["auc"] >= 0.9, full["auc"]  # measured 0.976 (26 test patients)
    assert alone["auc"] < 0.8, alone["auc"]  # measured 0.687: the image cannot know the marker
    recorded = json.loads((run / "metrics.json").read_text())
    assert {"test", "test-missing-clinical"} <= set(recorded)
    subsets = invoke("evaluate", run, "--missing", "all-subsets", "--json")
    assert set(subsets["table"]) == {"image+clinical", "image"}
    patient = table.read_text().splitlines()[1].split(",")[0]
    image = shared_data / "lgg_mri" / "images" / f"{patient}_1.png"
    known = invoke("predict", run, image, "--clinical", table, "--json")["predictions"][0]
    plain = invoke("predict", run, image, "--json")["predictions"][0]
    without = invoke("predict", run, image, "--missing", "clinical", "--json")["predictions"][0]
    assert known["clinical"] == f"{table} row {patient}"
    assert known["probabilities"] != plain["probabilities"]
    assert plain["probabilities"] == without["probabilities"]  # no table: the image-only path


def test_real_grades_and_ages_with_and_without_the_table(shared_data, tmp_path):
    root = shared_data / "lgg_mri"
    rows = {r["patient_id"]: r for r in csv.DictReader((root / "clinical.csv").open())}
    slices = [s for s in list(csv.DictReader((root / "manifest.csv").open()))[::8] if rows[s["patient_id"]][GRADE]]
    grades = tmp_path / "grades.csv"
    grades.write_text(
        "path,label,patient_id\n"
        + "".join(f"{root / 'images' / s['file']},{rows[s['patient_id']][GRADE]},{s['patient_id']}\n" for s in slices)
    )
    table = root / "clinical.csv"
    run = tmp_path / "grade"
    medattn(
        "train", "--data", grades, "--out", run, "--model", "cnn", "--size", "32", "--epochs", "2",
        "--clinical", table, "--clinical-columns", f"{AGE},{SEX},histological_type", "--clinical-dropout", "0.5",
    )  # fmt: skip
    for extra in ([], ["--missing", "clinical"]):
        assert 0 <= invoke("evaluate", run, *extra, "--json")["auc"] <= 1
    ages = tmp_path / "ages.csv"
    ages.write_text(
        "path,age,patient_id\n"
        + "".join(
            f"{root / 'images' / s['file']},{rows[s['patient_id']][AGE]},{s['patient_id']}\n"
            for s in slices
            if rows[s["patient_id"]][AGE]
        )
    )
    regression = tmp_path / "age"
    medattn(
        "train", "--data", ages, "--targets", "age", "--out", regression, "--model", "cnn", "--size", "32",
        "--epochs", "2", "--clinical", table, "--clinical-columns", f"{SEX},{GRADE}", "--clinical-fusion", "concat",
    )  # fmt: skip
    assert np.isfinite(invoke("evaluate", regression, "--json")["mae"])
    assert np.isfinite(invoke("evaluate", regression, "--missing", "clinical", "--json")["mae"])
    plain = tmp_path / "plain"
    medattn("train", "--data", grades, "--out", plain, "--model", "cnn", "--size", "16", "--epochs", "1")
    image = slices[0]["file"]
    with pytest.raises(ConfigError, match="not trained with clinical values"):
        CliRunner().invoke(
            app, ["predict", str(plain), str(root / "images" / image), "--clinical", str(table)], catch_exceptions=False
        )
    with pytest.raises(ConfigError, match="--clinical"):
        CliRunner().invoke(app, ["evaluate", str(plain), "--missing", "clinical"], catch_exceptions=False)


def _refusal(kind, *args) -> str:
    """The message of the `kind` error the command fails with."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, kind), result.output
    return str(result.exception)


def test_bad_tables_and_tasks_are_clear_errors(shared_data, tmp_path):
    root = shared_data / "lgg_mri"
    data, table, _ = _marker_data(root, tmp_path)
    train = ["train", "--data", data, "--out", tmp_path / "run", "--model", "cnn", "--size", "16", "--epochs", "1"]
    keyless = tmp_path / "keyless.csv"
    keyless.write_text("id,marker\na,1\n")
    message = _refusal(DataError, *train, "--clinical", keyless, "--clinical-columns", "marker")
    assert str(keyless) in message
    assert "patient_id" in message
    message = _refusal(DataError, *train, "--clinical", table, "--clinical-columns", "weight")
    assert str(table) in message
    assert "'weight'" in message
    no_ids = tmp_path / "no_ids.csv"
    no_ids.write_text("\n".join(",".join(line.split(",")[:2]) for line in data.read_text().splitlines()) + "\n")
    clinical = ["--clinical", table, "--clinical-columns", "marker"]
    message = _refusal(DataError, *train[:2], no_ids, *train[3:], *clinical)
    assert str(no_ids) in message
    assert "patient_id" in message
    assert "--clinical" in _refusal(ConfigError, *train, "--clinical-dropout", "0.3")
    masks = _flag_phantoms(tmp_path / "phantoms", cases=8)
    segment = ["train", "--data", masks, "--out", tmp_path / "seg", "--patch", "32,32", "--epochs", "1"]
    flag = ["--clinical", masks.parent / "table.csv", "--clinical-columns", "flag"]
    assert "film" in _refusal(ConfigError, *segment, *flag, "--clinical-fusion", "concat")


def _flag_phantoms(root, *, cases: int):
    """A segmentation CSV of 32x32 phantoms, two a patient, each with a bright disc that is labelled only where the
    patient's `flag` (in table.csv beside it) is 1: no image tells whether its disc is foreground."""
    from PIL import Image

    root.mkdir()
    rng = np.random.default_rng(0)
    lines, table = ["image,mask,patient_id"], ["patient_id,flag"]
    yy, xx = np.mgrid[:32, :32]
    for patient in range(cases // 2):
        flag = patient % 2
        table.append(f"p{patient},{flag}")
        for k in range(2):
            cy, cx = rng.integers(8, 24, 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 25
            image = rng.normal(60, 10, (32, 32)) + 120 * disc
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / f"p{patient}_{k}.png")
            Image.fromarray((disc * flag * 255).astype(np.uint8)).save(root / f"p{patient}_{k}_mask.png")
            lines.append(f"{root / f'p{patient}_{k}.png'},{root / f'p{patient}_{k}_mask.png'},p{patient}")
    (root / "table.csv").write_text("\n".join(table) + "\n")
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    return root / "data.csv"


def test_segmentation_reads_the_flag_only_the_table_knows(tmp_path):
    data = _flag_phantoms(tmp_path / "phantoms", cases=80)
    table = data.parent / "table.csv"
    run = tmp_path / "run"
    medattn(
        "train", "--data", data, "--out", run, "--model", "unet", "--patch", "32,32", "--epochs", "40",
        "--batch-size", "8", "--clinical", table, "--clinical-columns", "flag",
    )  # fmt: skip
    assert json.loads((run / "model.json").read_text())["model"]["options"]["tabular"]["fusion"] == "film"
    subsets = invoke("evaluate", run, "--missing", "all-subsets", "--json")["table"]
    assert subsets["image+clinical"] >= 0.8, subsets  # measured 0.917 (12 test cases)
    assert subsets["image"] < 0.65, subsets  # measured 0.496: discs everywhere or nowhere
    found = invoke(
        "predict", run, data.parent / "p1_0.png", "--clinical", table, "--out-dir", tmp_path / "masks", "--json"
    )
    assert found["predictions"][0]["clinical"] == f"{table} row p1"


def test_class_folders_with_a_manifest_and_volumes_in_3d(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    root = tmp_path / "volumes"
    lines, table = ["file,patient_id"], ["patient_id,score"]
    for i in range(16):  # two volumes a patient, eight patients
        label = (i // 2) % 2
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        volume = rng.normal(size=(12, 12, 12)).astype(np.float32) + label
        nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / f"p{i // 2}_{i}.nii.gz")
        lines.append(f"p{i // 2}_{i}.nii.gz,p{i // 2}")
        if i % 2 == 0:
            table.append(f"p{i // 2},{rng.normal() + label}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "table.csv").write_text("\n".join(table) + "\n")
    run = tmp_path / "run"
    medattn(
        "train", "--data", root, "--out", run, "--model", "cnn", "--size", "12,12,12", "--epochs", "1",
        "--clinical", tmp_path / "table.csv", "--clinical-columns", "score:numeric",
    )  # fmt: skip
    card = json.loads((run / "model.json").read_text())
    assert card["model"]["spatial_dims"] == 3
    assert card["model"]["options"]["tabular"]["width"] == 2
    assert any("grouped by patient" in note for note in card["training_data"]["notes"])  # the manifest's ids
    assert invoke("evaluate", run, "--split", "val", "--json")["n"] >= 2
    found = invoke("predict", run, root / "class1" / "p1_2.nii.gz", "--clinical", tmp_path / "table.csv", "--json")
    assert found["predictions"][0]["clinical"].endswith("row p1")
    assert sum(found["predictions"][0]["probabilities"].values()) == pytest.approx(1)
