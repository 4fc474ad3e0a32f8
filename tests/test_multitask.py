"""Multi-task runs (--heads): parsing and data errors, the multitask_unet contract in 2D and 3D, a short real run on
lgg_mri slices (segmentation + 'tumour on this slice') scored per head, partly labelled data, and resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.run_cli import invoke

from medattn.config import RunConfig
from medattn.engine.trainer import fit
from medattn.errors import ConfigError, DataError
from medattn.registry import create_model
from medattn.runs import prepare_run_dir
from medattn.tasks import get_task, task_for_data
from medattn.tasks.multitask.heads import Head, parse_heads, parse_weights
from medattn.tasks.multitask.loss import MultiTaskLoss
from medattn.tasks.multitask.sources import open_multitask
from medattn.tasks.multitask.task import MultiTaskTask

SIDE = 64  # slices resized from 128 px: a short run on one thread


def derived_lgg(root, out, *, patients: int, every: int = 4):
    """`patients` lgg_mri patients, every `every`-th slice, at SIDE px, with manifest columns mask_pixels, grade
    and gender (the patient's histologic grade and gender from clinical.csv)."""
    from PIL import Image

    rows = list(csv.DictReader((root / "manifest.csv").open()))
    clinical = {r["patient_id"]: r for r in csv.DictReader((root / "clinical.csv").open())}
    chosen = sorted({r["patient_id"] for r in rows})[:patients]
    kept = [r for r in rows if r["patient_id"] in chosen and int(r["slice_number"]) % every == 0]
    for sub, resample in (("images", Image.BILINEAR), ("masks", Image.NEAREST)):
        (out / sub).mkdir(parents=True)
        for r in kept:
            Image.open(root / sub / r["file"]).resize((SIDE, SIDE), resample).save(out / sub / r["file"])
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "patient_id", "mask_pixels", "grade", "gender"])
        for r in kept:
            patient = clinical[r["patient_id"]]
            writer.writerow(
                [r["file"], r["patient_id"], r["mask_pixels"], patient["neoplasm_histologic_grade"], patient["gender"]]
            )
    return out


@pytest.fixture(scope="module")
def lgg10(shared_data, tmp_path_factory):
    return derived_lgg(shared_data / "lgg_mri", tmp_path_factory.mktemp("lgg") / "lgg10", patients=10)


def test_heads_and_weights_parse_or_say_what_is_wrong():
    heads = parse_heads(["segmentation", "classification:foreground", "regression:age"])
    assert [h.name for h in heads] == ["segmentation", "classification:foreground", "regression:age"]
    assert heads[1].derived
    assert not heads[2].derived
    assert parse_weights(None, heads) is None
    assert parse_weights("uncertainty", heads) is None
    assert parse_weights("1,0.5,2", heads) == [1.0, 0.5, 2.0]
    for bad, message in (
        (["segmentation:x"], "names no column"),
        (["classification"], "name its column"),
        (["detection:x"], "kind must be one of"),
        (["regression:a", "regression:a"], "more than once"),
        ([], "names no head"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_heads(bad)
    with pytest.raises(ConfigError, match="2 weight"):
        parse_weights("1,2", heads)
    with pytest.raises(ConfigError, match="not all 0"):
        parse_weights("0,0,0", heads)


def test_data_errors_name_the_file_and_the_column(lgg10, tmp_path):
    manifest = lgg10 / "manifest.csv"
    with pytest.raises(DataError, match=r"manifest\.csv: no column 'stage'"):
        open_multitask(lgg10, parse_heads(["segmentation", "classification:stage"]))
    rows = list(csv.DictReader(manifest.open()))
    copy = tmp_path / "copy"
    copy.mkdir()
    for sub in ("images", "masks"):
        (copy / sub).symlink_to(lgg10 / sub)

    def write(**column):
        with (copy / "manifest.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*rows[0], *column])
            writer.writeheader()
            writer.writerows({**r, **{k: f(i) for k, f in column.items()}} for i, r in enumerate(rows))

    write(empty=lambda i: "")
    with pytest.raises(DataError, match=r"manifest\.csv: column 'empty' .* is empty"):
        open_multitask(copy, parse_heads(["regression:empty"]))
    write(size=lambda i: "large" if i == 3 else str(i))
    with pytest.raises(DataError, match=r"manifest\.csv: column 'size' .* holds 'large'.*not a finite number"):
        open_multitask(copy, parse_heads(["regression:size"]))
    config = RunConfig.from_dict({"data": {"path": str(lgg10), "heads": ["segmentation"], "modalities": ["a", "b"]}})
    config.model.fusion = "late"
    with pytest.raises(ConfigError, match="only early"):
        get_task("multitask").check(config)
    report = invoke("data", "inspect", lgg10, "--heads", "segmentation,regression:mask_pixels", "--json")
    assert sum(split["cases"] for split in report["splits"].values()) == len(rows)
    assert report["splits"]["train"]["regression:mask_pixels"]["labelled"] == report["splits"]["train"]["cases"]
    # chosen only when --heads is given: the same folder is segmentation data without it
    assert task_for_data(lgg10).name == "segmentation"
    assert task_for_data(lgg10, config=config).name == "multitask"


@pytest.mark.parametrize("dims", [2, 3])
def test_model_gives_one_output_per_head_and_round_trips(dims, tmp_path):
    heads = {"segmentation": 3, "classification:grade": 2, "regression:age": 1}
    options = {"heads": heads, "channels": [8, 16, 32], "uncertainty": True}
    torch.manual_seed(0)
    model = create_model("multitask_unet", spatial_dims=dims, in_channels=2, num_classes=3, options=options)
    x = torch.randn(2, 2, *[20] * dims)  # a side that halves unevenly
    out = model(x)
    assert list(out) == list(heads)
    assert out["segmentation"].shape == (2, 3, *[20] * dims)
    assert out["classification:grade"].shape == (2, 2)
    assert out["regression:age"].shape == (2, 1)
    sum(o.square().mean() for o in out.values()).backward()
    idle = [n for n, p in model.named_parameters() if p.grad is None and n != "log_variances"]
    assert not idle
    assert model.log_variances.shape == (3,)
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    again = create_model(
        "multitask_unet", spatial_dims=dims, in_channels=2, num_classes=3, options=model.config["options"]
    )
    again.load_state_dict(load_file(tmp_path / "m.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), again.eval()(x))
    vector = create_model(
        "multitask_unet", spatial_dims=dims, in_channels=2, num_classes=1, options={"heads": {"r": 1}}
    )
    assert not any("decoder" in name for name, _ in vector.named_parameters())  # no decoder without segmentation


def test_unlabelled_images_add_nothing_to_a_heads_loss():
    heads = [Head("classification", "grade"), Head("regression", "age")]
    loss = MultiTaskLoss(heads, segmentation_loss=None, weights=[1.0, 1.0])
    outputs = {"classification:grade": torch.randn(3, 2, requires_grad=True), "regression:age": torch.randn(3, 1)}
    labelled = {
        "classification:grade": torch.tensor([1, -1, -1]),
        "regression:age": torch.tensor([0.5, float("nan"), 1.0]),
    }
    none = {"classification:grade": torch.tensor([-1, -1, -1]), "regression:age": torch.full((3,), float("nan"))}
    ce = torch.nn.functional.cross_entropy(outputs["classification:grade"][:1], labelled["classification:grade"][:1])
    mse = ((outputs["regression:age"][[0, 2], 0] - torch.tensor([0.5, 1.0])) ** 2).mean()
    torch.testing.assert_close(loss(None, outputs, labelled, "cpu"), ce + mse)
    assert float(loss(None, outputs, none, "cpu").detach()) == 0.0


def test_segmentation_and_tumour_on_slice_train_together_on_lgg(lgg10, tmp_path):
    run = tmp_path / "run"
    heads = "segmentation,classification:foreground"
    args = ("--epochs", "30", "--batch-size", "8", "--lr", "0.01", "--seed", "0")
    result = invoke("train", "--data", lgg10, "--heads", heads, "--out", run, *args, "--json")
    assert result["task"] == "multitask"
    val = result["val"]
    assert val["segmentation/dice"] >= 0.4
    assert val["classification:foreground/auc"] >= 0.75
    assert val["score"] == pytest.approx((val["segmentation/dice"] + val["classification:foreground/auc"]) / 2)
    card = json.loads((run / "model.json").read_text())
    weighting = card["head_weighting"]
    assert set(weighting["log_variances"]) == {"segmentation", "classification:foreground"}
    assert any(abs(s) > 1e-3 for s in weighting["log_variances"].values())  # learned, not left at 0
    assert card["model"]["options"]["uncertainty"] is True

    scored = invoke("evaluate", run, "--json")
    assert scored["split"] == "test"
    assert set(scored["heads"]) == {"segmentation", "classification:foreground"}
    seg, tumour = scored["heads"]["segmentation"], scored["heads"]["classification:foreground"]
    assert 0 <= seg["dice_mean_ci"][0] <= seg["dice_mean"] <= seg["dice_mean_ci"][1] <= 1
    assert tumour["auc_ci"][0] <= tumour["auc"] <= tumour["auc_ci"][1]
    assert 0 < seg["patients"]["n"] < seg["n"]  # slices of a few patients: also scored per patient
    assert (
        json.loads((run / "metrics.json").read_text())["test"]["heads"]["segmentation"]["dice_mean"] == seg["dice_mean"]
    )

    image = sorted((lgg10 / "images").iterdir())[0]
    predicted = invoke("predict", run, image, "--json")["predictions"][0]
    assert (run / "predictions" / f"{image.stem}_mask.png").is_file()
    assert predicted["classification:foreground"]["label"] in ("absent", "present")
    table = list(csv.DictReader((run / "predictions" / "predictions.csv").open()))
    assert table[0]["file"] == str(image)
    assert table[0]["classification:foreground"] == predicted["classification:foreground"]["label"]


def _partly_labelled(lgg10, tmp_path):
    """Every third row's gender and every fifth row's mask_pixels left empty."""
    rows = list(csv.DictReader((lgg10 / "manifest.csv").open()))
    copy = tmp_path / "partly"
    copy.mkdir()
    for sub in ("images", "masks"):
        (copy / sub).symlink_to(lgg10 / sub)
    with (copy / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow(
                {
                    **row,
                    "gender": "" if i % 3 == 0 else row["gender"],
                    "mask_pixels": "" if i % 5 == 0 else row["mask_pixels"],
                }
            )
    return copy


def test_partly_labelled_heads_without_segmentation_resume_exactly(lgg10, tmp_path, monkeypatch):
    data = _partly_labelled(lgg10, tmp_path)
    config = RunConfig.from_dict(
        {
            "data": {"path": str(data), "heads": ["classification:gender", "regression:mask_pixels"]},
            "train": {"epochs": 3, "batch_size": 8, "head_weights": "1,0.5", "seed": 1},
        }
    )
    full = prepare_run_dir(tmp_path / "full", resume=False, force=False)
    fit(config, full, quiet=True)
    real, calls = MultiTaskTask.validate, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during epoch 3: epochs 1-2 are checkpointed
        return real(self, *args, **kwargs)

    cut = prepare_run_dir(tmp_path / "cut", resume=False, force=False)
    monkeypatch.setattr(MultiTaskTask, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(config, cut, quiet=True)
    monkeypatch.setattr(MultiTaskTask, "validate", real)
    invoke("train", "--out", cut, "--resume", "--json")

    def history(run):
        return [(r["epoch"], r["train_loss"], r["val_score"]) for r in csv.DictReader((run / "history.csv").open())]

    assert len(history(full)) == 3
    assert history(cut) == history(full)
    card = json.loads((cut / "model.json").read_text())
    assert card["head_weighting"] == {
        "rule": "fixed",
        "weights": {"classification:gender": 1.0, "regression:mask_pixels": 0.5},
    }
    assert not any("decoder" in key for key in load_file(cut / "model.safetensors"))
    scored = invoke("evaluate", cut, "--split", "val", "--json")["heads"]
    assert scored["classification:gender"]["unlabelled"] > 0
    assert scored["regression:mask_pixels"]["unlabelled"] > 0
    assert (
        scored["regression:mask_pixels"]["n"] + scored["regression:mask_pixels"]["unlabelled"]
        == scored["classification:gender"]["n"] + scored["classification:gender"]["unlabelled"]
    )


def test_a_split_without_any_label_for_a_head_scores_nothing_for_it():
    from medattn.tasks.multitask.data import HeadSpec
    from medattn.tasks.multitask.scores import head_metrics, scalar_scores

    spec = HeadSpec(Head("classification", "grade"), ["2", "3"])
    empty = head_metrics(spec, np.array([-1, -1]), [np.array([0.4, 0.6])] * 2, ci=False)
    assert empty == {"kind": "classification", "column": "grade", "unlabelled": 2, "n": 0}
    labelled = head_metrics(
        spec, np.array([0, 1, -1]), [np.array([0.8, 0.2]), np.array([0.3, 0.7]), np.array([0.5, 0.5])], ci=False
    )
    assert labelled["n"] == 2
    assert labelled["auc"] == 1.0
    assert scalar_scores({"a": empty, "b": labelled})["score"] == 1.0  # the mean of the heads that could be scored


def test_heads_without_masks_from_a_path_csv_with_fused_modalities(lgg10, tmp_path):
    rows = list(csv.DictReader((lgg10 / "manifest.csv").open()))
    table = tmp_path / "slices.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "mask_pixels", "gender"])
        writer.writerows([lgg10 / "images" / r["file"], r["patient_id"], r["mask_pixels"], r["gender"]] for r in rows)
    with pytest.raises(DataError, match="has no masks, which classification:foreground need"):
        open_multitask(table, parse_heads(["classification:foreground"]))
    run = tmp_path / "run"
    heads = "classification:gender,regression:mask_pixels"
    fused = ("--modalities", "t1,flair,t1c", "--fusion", "early", "--modality-dropout", "0.3")
    invoke("train", "--data", table, "--heads", heads, "--out", run, "--epochs", "2", *fused, "--json")
    card = json.loads((run / "model.json").read_text())
    assert card["model"]["options"]["modalities"] == ["t1", "flair", "t1c"]
    assert card["model"]["options"]["heads"] == {"classification:gender": 2, "regression:mask_pixels": 1}
    scored = invoke("evaluate", run, "--missing", "flair", "--json")
    assert scored["missing"] == ["flair"]
    assert scored["heads"]["classification:gender"]["n"] == scored["n"]
    assert scored["heads"]["regression:mask_pixels"]["mae"] >= 0
