"""Clinical variables beside the images: the encoding (checked by hand on lgg_mri's clinical.csv), the fusion
layers, and attention MIL trained with age and sex, its card rebuilding the same vectors in evaluate and
predict."""

import csv
import json
import os

import numpy as np
import pytest
import torch
from tests.run_cli import invoke
from tests.run_cli import run as medattn

from medattn.data.clinical import ClinicalSpec, fit_clinical
from medattn.errors import DataError
from medattn.registry import create_model

AGE, SEX = "age_at_initial_pathologic", "gender"


def test_encoding_standardises_one_hots_and_flags_missing(shared_data, tmp_path):
    table = shared_data / "lgg_mri" / "clinical.csv"
    rows = list(csv.DictReader(table.open()))
    train = [r["patient_id"] for r in rows[:40]]
    spec, values = fit_clinical(table, [AGE, SEX], train)
    ages = np.asarray([float(r[AGE]) for r in rows[:40] if r[AGE]])
    age, sex = spec.columns
    assert (age.kind, sex.kind) == ("numeric", "categorical")  # 1/2-coded sex is a category, age a number
    assert age.mean == pytest.approx(ages.mean())
    assert age.std == pytest.approx(ages.std())
    assert sex.categories == ["1", "2"]
    assert spec.width == 2 + 3
    row = rows[0]
    expected = [(float(row[AGE]) - ages.mean()) / ages.std(), 0.0, float(row[SEX] == "1"), float(row[SEX] == "2"), 0]
    np.testing.assert_allclose(spec.vector(values[row["patient_id"]]), expected, rtol=1e-5)
    np.testing.assert_array_equal(spec.vector(None), [0, 1, 0, 0, 1])  # a patient without a row: all unknown
    np.testing.assert_array_equal(spec.vector({AGE: "", SEX: "9"}), [0, 1, 0, 0, 1])  # empty, unseen category
    again = ClinicalSpec.from_card(json.loads(json.dumps(spec.to_card())))
    np.testing.assert_array_equal(again.vector(values[row["patient_id"]]), spec.vector(values[row["patient_id"]]))
    forced, _ = fit_clinical(table, [f"{SEX}:numeric"], train)
    assert forced.columns[0].kind == "numeric"
    with pytest.raises(DataError, match="no column 'weight'"):
        fit_clinical(table, ["weight"], train)
    with pytest.raises(DataError, match="none of the training patients"):
        fit_clinical(table, [AGE], ["nobody"])


def test_film_starts_as_the_identity_and_concat_reads_the_values():
    torch.manual_seed(0)
    bags = torch.randn(2, 4, 1, 16, 16)
    clinical = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
    for mode, changes in (("film", False), ("concat", True)):
        options = {"clinical": 3, "clinical_fusion": mode, "clinical_missing": [0.0, 1.0, 0.0]}
        model = create_model("attention_mil", spatial_dims=2, in_channels=1, num_classes=2, options=options).eval()
        with torch.no_grad():
            a = model(bags, clinical)
            b = model(bags, clinical.flip(0))
            unknown = model(bags)  # no clinical values: the all-unknown vector
            stated = model(bags, torch.tensor([[0.0, 1.0, 0.0]] * 2))
        assert (not torch.allclose(a, b)) == changes, mode
        torch.testing.assert_close(unknown, stated)


def test_mil_with_age_and_sex_on_real_grades(shared_data, tmp_path):
    root = shared_data / "lgg_mri"
    grades = {r["patient_id"]: r["neoplasm_histologic_grade"] for r in csv.DictReader((root / "clinical.csv").open())}
    slices = list(csv.DictReader((root / "manifest.csv").open()))
    patients = sorted(grades)
    chosen = [p for p in patients if grades[p] == "1"][:8] + [p for p in patients if grades[p] == "2"][:8]
    lines = ["path,label,patient_id"]
    lines += [f"{root / 'images' / s['file']},{grades[s['patient_id']]},{s['patient_id']}" for s in slices[::4]]
    lines = [lines[0], *[line for line in lines[1:] if line.rsplit(",", 1)[1] in chosen]]
    data = tmp_path / "grade.csv"
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    medattn(
        "train", "--data", data, "--bag", "patient_id", "--out", run, "--epochs", "2", "--size", "32",
        "--clinical", root / "clinical.csv", "--clinical-columns", f"{AGE},{SEX}", "--clinical-fusion", "film",
        "--clinical-dropout", "0.3",
    )  # fmt: skip
    assert "clinical_dropout: 0.3" in (run / "config.yaml").read_text()
    card = json.loads((run / "model.json").read_text())
    assert card["clinical"]["features"] == [AGE, f"{AGE} missing", f"{SEX}=1", f"{SEX}=2", f"{SEX} missing"]
    assert card["model"]["options"]["clinical"] == 5
    assert card["model"]["options"]["clinical_fusion"] == "film"
    metrics = invoke("evaluate", run, "--json")
    assert metrics["unit"] == "bags"
    assert metrics["n"] >= 2
    patient = chosen[0]
    bag = tmp_path / patient
    bag.mkdir()
    for s in [s for s in slices if s["patient_id"] == patient][:5]:
        (bag / s["file"]).write_bytes((root / "images" / s["file"]).read_bytes())
    found = invoke("predict", run, bag, "--json")["predictions"][0]
    assert found["clinical"].endswith(f"row {patient}")
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "a.png").write_bytes((bag / sorted(os.listdir(bag))[0]).read_bytes())
    unknown = invoke("predict", run, tmp_path / "stranger", "--json")["predictions"][0]
    assert "every value unknown" in unknown["clinical"]
    assert found["probabilities"] != unknown["probabilities"] or found["instances"] != unknown["instances"]
    alone = invoke("evaluate", run, "--missing", "clinical", "--json")  # every bag's values unknown
    assert alone["missing"] == ["clinical"]
    assert "test-missing-clinical" in json.loads((run / "metrics.json").read_text())
    left = invoke("predict", run, bag, "--missing", "clinical", "--json")["predictions"][0]
    assert left["clinical"].startswith("left out")
