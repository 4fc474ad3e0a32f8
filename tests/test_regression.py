"""Regression, the third task: targets from an npz or a CSV column, metrics checked against scikit-learn and
scipy, and the command line end to end (train, evaluate --json, predict, tune cv, data inspect)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from medattn.errors import DataError
from medattn.tasks.regress.metrics import regression_metrics
from medattn.tasks.regress.phantom import save_burden_npz
from medattn.tasks.regress.sources import open_targets, target_bins

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = "model: {options: {widths: [8, 16, 32], depths: [1, 1, 1]}}\ntrain: {threads: 1, batch_size: 32}\n"


def medattn(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "medattn", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_metrics_match_scikit_learn_and_scipy():
    rng = np.random.default_rng(0)
    y = rng.normal(50, 10, (80, 2))
    p = y + rng.normal(0, 4, (80, 2))
    m = regression_metrics(y, p, target_names=["age", "size"], n_boot=200)
    for j, name in enumerate(["age", "size"]):
        row = m["per_target"][name]
        assert row["mae"] == pytest.approx(mean_absolute_error(y[:, j], p[:, j]))
        assert row["rmse"] == pytest.approx(mean_squared_error(y[:, j], p[:, j]) ** 0.5)
        assert row["r2"] == pytest.approx(r2_score(y[:, j], p[:, j]))
        assert row["pearson"] == pytest.approx(pearsonr(y[:, j], p[:, j])[0])
        assert row["spearman"] == pytest.approx(spearmanr(y[:, j], p[:, j])[0])
        assert row["mae_ci"][0] < row["mae"] < row["mae_ci"][1]
    assert m["mae"] == pytest.approx(np.mean([m["per_target"][n]["mae"] for n in ("age", "size")]))
    constant = regression_metrics(y[:, :1], np.full((80, 1), 50.0), target_names=["age"], ci=False)
    assert np.isnan(constant["pearson"])
    assert constant["r2"] < 0.05


def _disc_csv(root, n=72):
    """PNG images holding a bright disc; the target is its radius in pixels; 3 images per patient."""
    rng = np.random.default_rng(1)
    (root / "img").mkdir(parents=True, exist_ok=True)
    grid = np.mgrid[0:24, 0:24]
    rows = ["path,radius,patient_id"]
    for i in range(n):
        radius = float(rng.uniform(2, 9))
        centre = rng.uniform(9, 15, 2)
        disc = ((grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2) < radius**2
        image = np.clip(40 + 160 * disc + rng.normal(0, 12, (24, 24)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "img" / f"d{i:03d}.png")
        rows.append(f"img/d{i:03d}.png,{radius:.3f},P{i // 3}")
    (root / "discs.csv").write_text("\n".join(rows) + "\n")
    return root / "discs.csv"


def test_csv_targets_are_read_and_bad_rows_named(tmp_path):
    csv = _disc_csv(tmp_path, n=30)
    source = open_targets(csv)
    assert source.target_names == ["radius"]
    assert source.splits["train"].labels.shape == (30, 1)
    assert source.splits["train"].patient_ids[:3] == ["P0", "P0", "P0"]
    bins = target_bins(source.splits["train"].labels)
    assert sorted(set(bins.tolist())) == [0, 1, 2, 3, 4]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,radius\nimg/d000.png,3.1\nimg/d001.png,large\n")
    with pytest.raises(DataError, match=r"bad.csv line 3: radius = 'large' is not a number"):
        open_targets(bad)
    with pytest.raises(DataError, match="no column 'age'"):
        open_targets(csv, targets=["age"])


def test_npz_end_to_end_from_the_command_line(tmp_path):
    data = save_burden_npz(tmp_path / "burden.npz", n_train=240, n_val=60, n_test=60, size=24, seed=2)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    run = tmp_path / "run"
    result = json.loads(
        medattn("train", "--data", data, "--out", run, "--epochs", "6", "--config", config, "--json").stdout
    )
    assert result["task"] == "regression"
    card = json.loads((run / "model.json").read_text())
    assert card["task"] == "regression"
    assert card["target_names"] == ["target"]
    assert card["target_std"][0] > 0
    metrics = json.loads(medattn("evaluate", run, "--json").stdout)
    assert {"mae", "rmse", "r2", "pearson", "spearman", "mae_ci", "per_target"} <= set(metrics)
    assert metrics["n"] == 60
    # the organ area (pixels per 1000) of 24-pixel phantoms: measured r2 0.35 and Pearson 0.62 after 6 epochs
    assert metrics["pearson"] > 0.3
    assert (run / "calibration-test.png").stat().st_size > 5000
    image = tmp_path / "one.png"
    Image.fromarray(np.load(data)["test_images"][0]).save(image)
    predicted = json.loads(medattn("predict", run, image, "--tta", "--json").stdout)
    assert set(predicted["predictions"][0]["values"]) == {"target"}
    refused = medattn("predict", run, image, "--out-dir", tmp_path / "x", check=False)
    assert refused.returncode == 2
    assert "--out-dir means nothing to a regression run" in refused.stderr


def test_csv_end_to_end_learns_the_radius(tmp_path):
    csv = _disc_csv(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    run = tmp_path / "run"
    medattn("train", "--data", csv, "--targets", "radius", "--out", run, "--epochs", "12", "--config", config)
    metrics = json.loads(medattn("evaluate", run, "--json").stdout)
    assert list(metrics["per_target"]) == ["radius"]
    # measured: MAE 0.47 px, r2 0.90 on the 9 test images carved by patient (radii 2-9 px) after 12 epochs
    assert metrics["r2"] > 0.4
    assert metrics["mae"] < 1.5
    report = json.loads(medattn("data", "inspect", csv, "--json").stdout)
    assert report["task"] == "regression"
    assert report["targets"]["train"]["radius"]["min"] >= 2
    refused = medattn("train", "--data", csv, "--out", tmp_path / "r2", "--sampler", "balanced", check=False)
    assert refused.returncode == 2
    assert "train.sampler (--sampler) = 'balanced' means nothing to regression" in refused.stderr
    assert not (tmp_path / "r2").exists()
