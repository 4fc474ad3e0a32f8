"""Named modalities: the fusion wrapper over registered models (early, late, hemis, cross-attention; 2D and 3D;
classifiers and a U-Net), modality dropout, and the command line on real lgg_mri slices (T1, FLAIR, T1-Gd):
training with dropout, `evaluate --missing` on one subset and on all seven, `predict --missing`."""

import csv
import json

import pytest
import torch
import yaml
from tests.run_cli import invoke
from tests.run_cli import run as medattn
from typer.testing import CliRunner

from medattn.cli import app
from medattn.data.modality_dropout import ModalityDropout
from medattn.errors import ConfigError
from medattn.models.fusion import FUSIONS, blank_modalities
from medattn.registry import create_model
from medattn.tasks.base import DEFAULT_MODALITY_DROPOUT

NAMES = ["t1", "flair", "t1c"]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("name", ["attn_resnet", "unet"])
def test_every_fusion_runs_on_every_subset_and_rebuilds(name, fusion, dims):
    torch.manual_seed(0)
    options = {"modalities": NAMES, "fusion": fusion}
    model = create_model(name, spatial_dims=dims, in_channels=3, num_classes=2, options=options).eval()
    size = 16 if dims == 3 else 32
    x = torch.randn(2, 3, *[size] * dims)
    with torch.no_grad():
        full = model(x)
        for missing in (["t1"], ["flair", "t1c"], ["t1", "flair"]):
            assert torch.isfinite(model(blank_modalities(x, NAMES, missing))).all(), missing
        config = model.config
        again = create_model(config["name"], spatial_dims=dims, in_channels=3, num_classes=2, options=config["options"])
        again.load_state_dict(model.state_dict())
        torch.testing.assert_close(again.eval()(x), full)
    assert config["options"]["modalities"] == NAMES
    assert config["options"]["fusion"] == fusion


def test_late_fusion_of_one_modality_is_that_modalitys_network():
    torch.manual_seed(0)
    options = {"modalities": NAMES, "fusion": "late"}
    model = create_model("cnn", spatial_dims=2, in_channels=3, num_classes=2, options=options).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        alone = model(blank_modalities(x, NAMES, ["t1", "t1c"]))
        torch.testing.assert_close(alone, model.backbones[1](x[:, 1:2]))
        changed = x.clone()
        changed[:, 0] = 5.0  # an absent modality's values cannot matter
        torch.testing.assert_close(model(blank_modalities(changed, NAMES, ["t1", "t1c"])), alone)
    with pytest.raises(ConfigError, match="at least one modality"):
        blank_modalities(x, NAMES, NAMES)
    with pytest.raises(ConfigError, match="t2"):
        blank_modalities(x, NAMES, ["t2"])


def test_modality_dropout_drops_whole_modalities_and_keeps_one():
    dropout = ModalityDropout(3, 0.6, seed=0)
    x = torch.randn(4000, 6, 4, 4)  # two channels per modality
    out = dropout(x)
    absent = torch.isnan(out).reshape(4000, 3, -1)
    whole = absent.all(dim=2)
    assert torch.equal(whole, absent.any(dim=2))  # a modality goes whole or not at all
    assert not whole.all(dim=1).any()  # never all of them
    assert 0.45 < float(whole.float().mean()) < 0.6  # 0.6 a modality, less the images that keep one back
    kept = ~torch.isnan(out)
    assert torch.equal(out[kept], x[kept])


def test_fused_classifier_on_real_sequences_with_missing_ones(shared_data, tmp_path):
    root = shared_data / "lgg_mri"
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    patients = sorted({r["patient_id"] for r in rows})[:12]
    lines = ["path,label,patient_id"]
    for r in rows:
        if r["patient_id"] in patients and int(r["slice_number"]) % 2 == 0:
            label = "tumour" if int(r["mask_pixels"]) > 0 else "none"
            lines.append(f"{root / 'images' / r['file']},{label},{r['patient_id']}")
    data = tmp_path / "tumour.csv"
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    medattn(
        "train", "--data", data, "--out", run, "--size", "32", "--epochs", "4", "--modalities", "t1,flair,t1c",
        "--fusion", "hemis", "--modality-dropout", "0.3",
    )  # fmt: skip
    card = json.loads((run / "model.json").read_text())
    assert card["model"]["options"]["modalities"] == NAMES
    assert card["model"]["options"]["fusion"] == "hemis"
    table = invoke("evaluate", run, "--missing", "all-subsets", "--json")
    assert list(table["table"]) == ["t1+flair+t1c", "t1+flair", "t1+t1c", "flair+t1c", "t1", "flair", "t1c"]
    assert table["table"]["t1+flair+t1c"] >= 0.8, table["table"]  # tumour slices told apart with every sequence
    assert all(value >= 0.6 for value in table["table"].values()), table["table"]  # and with any one left
    assert all(f"{table['metric']}_ci" in metrics for metrics in table["subsets"].values())
    recorded = json.loads((run / "metrics.json").read_text())
    assert recorded["test-missing-t1+flair"]["missing"] == ["t1", "flair"]
    one = invoke("evaluate", run, "--missing", "flair", "--json")
    assert one["auc"] == pytest.approx(table["subsets"]["t1+t1c"]["auc"])
    image = root / "images" / rows[10]["file"]
    assert invoke("predict", run, image, "--missing", "flair,t1c", "--json")["predictions"]
    refused = CliRunner().invoke(app, ["evaluate", str(run), "--missing", "t2"])
    assert isinstance(refused.exception, ConfigError)
    assert "not a modality" in str(refused.exception)


@pytest.mark.slow
def test_fused_segmenter_trains_with_dropout_and_scores_without_flair(shared_data, tmp_path):
    root = shared_data / "lgg_mri"
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    patients = sorted({r["patient_id"] for r in rows})[:4]
    folder = tmp_path / "lgg4"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for r in rows:
            if r["patient_id"] in patients:
                (folder / sub / r["file"]).symlink_to(root / sub / r["file"])
    listed = [r for r in rows if r["patient_id"] in patients]
    (folder / "manifest.csv").write_text(
        "\n".join(["file,patient_id", *(f"{r['file']},{r['patient_id']}" for r in listed)]) + "\n"
    )
    run = tmp_path / "seg"
    medattn(
        "train", "--data", folder, "--out", run, "--epochs", "1", "--modalities", "t1,flair,t1c", "--fusion",
        "late", "--modality-dropout", "0.5", "--patch", "64",
    )  # fmt: skip
    scored = invoke("evaluate", run, "--missing", "flair", "--json")
    assert scored["missing"] == ["flair"]
    assert 0 <= scored["dice_mean"] <= 1
    refused = CliRunner().invoke(
        app, ["train", "--data", str(folder), "--out", str(tmp_path / "x"), "--fusion", "late"]
    )
    assert isinstance(refused.exception, ConfigError)
    assert "--modalities" in str(refused.exception)


def test_modalities_auto_names_them_as_the_data_does_or_says_it_cannot(shared_data, tmp_path):
    import nibabel as nib
    import numpy as np

    folder = tmp_path / "nnunet"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):  # two channel files per case, nnU-Net's naming: case_0000 (the signal), case_0001 (noise)
        mask = np.zeros((16, 16, 16), np.uint8)
        mask[4 + i % 4 : 10 + i % 4, 5:11, 5:11] = 1
        for channel, image in enumerate((mask + 0.1 * rng.normal(size=mask.shape), rng.normal(size=mask.shape))):
            nib.save(
                nib.Nifti1Image(image.astype(np.float32), np.eye(4)), folder / "images" / f"c{i}_000{channel}.nii.gz"
            )
        nib.save(nib.Nifti1Image(mask, np.eye(4)), folder / "masks" / f"c{i}.nii.gz")
    run = tmp_path / "auto"
    medattn("train", "--data", folder, "--out", run, "--epochs", "1", "--modalities", "auto", "--patch", "16")
    card = json.loads((run / "model.json").read_text())
    assert card["model"]["options"]["modalities"] == ["0000", "0001"]
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert saved["modality_dropout"] == DEFAULT_MODALITY_DROPOUT  # several modalities: trained to miss one
    assert invoke("evaluate", run, "--missing", "0001", "--json")["missing"] == ["0001"]
    refused = CliRunner().invoke(
        app, ["train", "--data", str(shared_data / "lgg_mri"), "--out", str(tmp_path / "x"), "--modalities", "auto"]
    )
    assert isinstance(refused.exception, ConfigError)
    assert "does not name several channels" in str(refused.exception)


def test_a_config_saved_with_no_modality_dropout_as_0_still_loads_for_tasks_without_modalities():
    from medattn.config import RunConfig
    from medattn.tasks import get_task
    from medattn.tasks.base import check_fields

    config = RunConfig()
    config.train.modality_dropout = 0.0  # as runs saved it before the default became None
    check_fields(config, get_task("regression"))
    config.train.modality_dropout = 0.3
    with pytest.raises(ConfigError, match="modality_dropout"):
        check_fields(config, get_task("regression"))
