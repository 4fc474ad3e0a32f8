"""Explanations for every task: a segmenter trained on patches is explained through its sliding window over a
class region (predicted, or the given mask); a regressor's output; the score names a random baseline."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from medattn.config import RunConfig
from medattn.engine.trainer import fit
from medattn.runs import prepare_run_dir

sys.path.insert(0, str(Path(__file__).parent))
from explain_data import blob_csv, blob_segmentation, cli_json, explain_split, train_tiny  # noqa: E402


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    return blob_csv(root / "csv", n=100)


@pytest.fixture(scope="module")
def segmenter(blobs, tmp_path_factory):
    data = blob_segmentation(blobs, tmp_path_factory.mktemp("seg"))
    config = RunConfig()
    config.data.path, config.data.patch = str(data), [16, 16]
    config.model.name, config.model.options = "attention_unet", {"channels": [8, 16, 32]}
    config.train.epochs, config.train.batch_size, config.train.threads = 4, 8, 1
    run = prepare_run_dir(tmp_path_factory.mktemp("segrun") / "run", resume=False, force=False)
    fit(config, run)
    return data, run


def test_a_patch_trained_segmenter_is_explained_through_its_sliding_window(segmenter, tmp_path):
    data, run = segmenter
    card = json.loads((run / "model.json").read_text())
    assert card["input"]["patch"] == [16, 16]  # 24 x 24 images: four overlapping windows
    files = sorted((data / "images").iterdir())[1:8:2]  # odd images hold a blob
    before = cli_json("predict", run, *files, "--out-dir", tmp_path / "before")
    payload = cli_json(
        "explain", run, *files, "--method", "gradcam,attention,occlusion", "--out", tmp_path / "x", "--npy"
    )
    after = cli_json("predict", run, *files, "--out-dir", tmp_path / "after")
    assert [r["volumes"] for r in before["predictions"]] == [r["volumes"] for r in after["predictions"]]
    for row in payload["explanations"]:
        assert "explained over the predicted region" in row["prediction"]
        assert row["target"] == card["class_names"][1]
        for written in row["files"].values():
            heat = np.load(written["npy"])
            assert heat.shape == (24, 24)
            assert np.isfinite(heat).all()
            assert heat.max() > 0


def test_a_segmenter_explained_over_the_given_mask_and_scored(segmenter):
    data, run = segmenter
    payload = explain_split(
        run, data, "--limit", "4", "--method", "gradcam", "--region", "mask", "--score", "--steps", "4"
    )
    assert payload["n"] == 4
    assert set(payload["methods"]) == {"gradcam", "random"}
    assert {"deletion_auc", "insertion_auc", "deletion_auc_ci"} <= set(payload["methods"]["gradcam"])


def test_a_regressor_is_explained_for_its_output(tmp_path):
    from medattn.tasks.regress.phantom import save_burden_npz

    data = save_burden_npz(tmp_path / "burden.npz", n_train=48, n_val=16, n_test=4, size=16, seed=2)
    run = train_tiny(data, tmp_path / "run", epochs=1)
    payload = explain_split(run, data, "--method", "integrated_gradients,hirescam", "--out", tmp_path / "x")
    rows = payload["explanations"]
    assert len(rows) == 4
    assert all(
        r["prediction"].startswith("predicted target = ") and r["truth"].startswith("true target = ") for r in rows
    )
    assert all(Path(f["png"]).is_file() for r in rows for f in r["files"].values())


def test_faithfulness_and_localisation_beat_a_random_map_where_the_blob_decides(blobs, tmp_path):
    run = train_tiny(blobs, tmp_path / "run", epochs=6)
    payload = explain_split(run, blobs, "--method", "gradcam,integrated_gradients", "--score")
    methods, random = payload["methods"], payload["methods"]["random"]
    assert payload["n"] == 40
    assert payload["n_localised"] == 20
    assert random["energy_inside"] == pytest.approx(payload["mask_fraction"], abs=0.03)  # what a random map scores
    for name in ("gradcam", "integrated_gradients"):
        assert methods[name]["energy_inside"] > 2 * payload["mask_fraction"], name
        assert methods[name]["energy_inside_ci"][0] > random["energy_inside_ci"][1], name
        assert methods[name]["max_hit_rate"] >= 0.7, name
    assert methods["integrated_gradients"]["deletion_auc"] < random["deletion_auc"]
    assert methods["integrated_gradients"]["insertion_auc"] > random["insertion_auc"]
    road = explain_split(
        run, blobs, "--method", "integrated_gradients", "--score", "--removal", "road", "--limit", "10"
    )
    assert road["removal"] == "road"
    assert road["methods"]["integrated_gradients"]["deletion_auc"] < road["methods"]["random"]["deletion_auc"]
