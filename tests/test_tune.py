"""Cross-validation by patient, fold ensembles in evaluate/predict, and the resumable Optuna search."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from medattn.config import RunConfig, load_config
from medattn.data.phantom import save_medmnist_npz
from medattn.data.splits import Split
from medattn.engine.loaded import load_run
from medattn.errors import ConfigError, DataError, RunDirError
from medattn.tasks import get_task
from medattn.tasks.classify.metrics import classification_metrics
from medattn.tasks.classify.predict import predict_probs
from medattn.tasks.classify.report import evaluate_run
from medattn.tasks.classify.sources import open_source
from medattn.tasks.images import DEFAULT_OPTIONS
from medattn.tune.cv import CVSettings, run_cv
from medattn.tune.ensemble import ensemble_threshold
from medattn.tune.folds import assignment, make_folds
from medattn.tune.space import grid_from_dict, point_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def medattn(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "medattn", *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"medattn {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def _config(path, **train) -> RunConfig:
    config = RunConfig()
    config.data.path = str(path)
    config.model.options = {"widths": [8, 16, 32]}
    config.train.epochs = train.pop("epochs", 2)
    config.train.batch_size = 16
    config.train.threads = 1
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune") / "phantom.npz"
    save_medmnist_npz(path, n_train=40, n_val=20, n_test=30, spatial_dims=2, size=16, num_classes=2, seed=3)
    return path


@pytest.fixture(scope="module")
def cv_dir(npz):
    """A 2-fold cross-validation made through the command line, as a user would."""
    out = npz.parent / "cv"
    config = npz.parent / "tiny.yaml"
    config.write_text("model: {options: {widths: [8, 16, 32]}}\ntrain: {batch_size: 16, threads: 1}\n")
    result = medattn(
        "tune", "cv", "--data", npz, "--folds", 2, "--out", out, "--epochs", 2, "--config", config, "--json"
    )
    return out, json.loads(result.stdout)


# ---- folds -------------------------------------------------------------------------------------------


def _patients(n_patients=30, seed=0):
    """Patients with 1-4 images each; a patient's images share its label (classes 0, 1, 2 at 3:2:1)."""
    rng = np.random.default_rng(seed)
    labels, ids = [], []
    for patient in range(n_patients):
        for _ in range(rng.integers(1, 5)):
            labels.append([0, 0, 0, 1, 1, 2][patient % 6])
            ids.append(f"P{patient}")
    return Split(labels=np.asarray(labels, dtype=np.int64), patient_ids=ids)


def test_folds_partition_and_stratify():
    labels = np.asarray([0] * 30 + [1] * 20 + [2] * 10, dtype=np.int64)
    folds = make_folds(_pool(Split(labels=labels)), folds=5, seed=1)
    held = np.concatenate([f.held_out for f in folds])
    assert sorted(held.tolist()) == list(range(60))  # every image held out exactly once
    for fold in folds:
        assert not set(fold.train) & set(fold.held_out)
        assert len(fold.train) + len(fold.held_out) == 60
        assert Counter(labels[fold.held_out].tolist()) == {0: 6, 1: 4, 2: 2}  # the class mix of the whole


def test_no_patient_in_two_folds():
    split = _patients()
    ids = np.asarray(split.patient_ids)
    folds = make_folds(_pool(split), folds=3, repeats=2, seed=0)
    assert len(folds) == 6
    for repeat in (0, 1):
        owner = {}
        for fold in (f for f in folds if f.repeat == repeat):
            assert not set(ids[fold.train]) & set(ids[fold.held_out])
            assert set(split.labels[fold.held_out].tolist()) == {0, 1, 2}  # stratified: each fold has each class
            for patient in set(ids[fold.held_out]):
                assert owner.setdefault(patient, fold.index) == fold.index


def test_repeats_differ_and_are_reproducible():
    labels = np.asarray([0, 1] * 20, dtype=np.int64)
    first = assignment(make_folds(_pool(Split(labels=labels)), folds=4, repeats=2, seed=5), 40)
    again = assignment(make_folds(_pool(Split(labels=labels)), folds=4, repeats=2, seed=5), 40)
    assert first == again
    assert first[0] != first[1]


def test_too_many_folds_is_a_data_error_naming_the_flag_and_class():
    labels = np.asarray([0] * 10 + [1] * 3, dtype=np.int64)
    with pytest.raises(DataError, match=r"--folds 4: class 'rare' has only 3 image\(s\).*--folds 3 or fewer"):
        make_folds(_pool(Split(labels=labels)), folds=4, class_names=["common", "rare"], where="x.csv")
    split = _patients(n_patients=24)  # class 2 has 4 patients: grouped, a class counts patients, not images
    with pytest.raises(DataError, match=r"class '2' has only 4 patient\(s\)"):
        make_folds(_pool(split), folds=5)


def test_grouping_without_patient_ids_is_an_error_only_when_asked():
    split = Split(labels=np.asarray([0, 1] * 10, dtype=np.int64))
    with pytest.raises(DataError, match="--group patient: data.npz has no patient ids"):
        make_folds(_pool(split), folds=2, group="patient", where="data.npz")
    assert len(make_folds(_pool(split), folds=2, group="auto")) == 2
    with pytest.raises(ConfigError, match="--group 'patients'"):
        make_folds(_pool(split), folds=2, group="patients")
    with pytest.raises(ConfigError, match="--folds must be at least 2"):
        make_folds(_pool(split), folds=1)


def _pool(split):
    """A split as the classification task pools it for folds."""

    class Source:
        splits = {"train": split}

    return get_task("classification").fold_pool(Source())


def test_pooling_keeps_the_test_split_out(npz):
    source = open_source(npz)
    pool = get_task("classification").fold_pool(source)
    assert pool.n == 60
    np.testing.assert_array_equal(pool.items.images[40:], source.splits["val"].images)


# ---- cross-validation and the fold ensemble ----------------------------------------------------------


def test_cv_json_has_folds_mean_and_std(cv_dir):
    out, result = cv_dir
    saved = json.loads((out / "cv.json").read_text())
    assert [f["run"] for f in saved["folds"]] == ["fold-0-0", "fold-0-1"] == [f["run"] for f in result["folds"]]
    aucs = [f["auc"] for f in saved["folds"]]
    assert saved["mean"]["auc"] == pytest.approx(np.mean(aucs))
    assert saved["std"]["auc"] == pytest.approx(np.std(aucs, ddof=1))
    assert sum(f["n"] for f in saved["folds"]) == 60  # train+val pooled; the 30 test images stay out
    assert json.loads((out / "ensemble.json").read_text())["members"] == ["fold-0-0", "fold-0-1"]
    for fold in saved["folds"]:  # every fold is an ordinary run, trained on the other fold only
        card = json.loads((out / fold["run"] / "model.json").read_text())
        assert card["training_data"]["splits"] == {"train": 60 - fold["n"], "val": fold["n"], "test": 30}


def test_fold_runs_and_ensemble_evaluate_like_runs(cv_dir, npz):
    out, _ = cv_dir
    single = evaluate_run(out / "fold-0-0")
    assert single["n"] == 30
    assert "ensemble" not in single
    metrics = evaluate_run(out, split="test")
    assert metrics["ensemble"]["members"] == 2
    # the ensemble's probabilities are the mean of its members' (each standardised with its own card)
    source = open_source(npz)
    probs = []
    for name in ("fold-0-0", "fold-0-1"):
        run = load_run(out / name)
        unit = source.splits["test"].images.astype(np.float32) * run.intensity.scale  # uint8 -> 0-1
        x = (unit - run.intensity.mean) / run.intensity.std  # (N, 1, 16, 16)
        probs.append(predict_probs(run.model, torch.from_numpy(x), labels="binary"))
    expected = classification_metrics(source.splits["test"].labels, np.mean(probs, axis=0), task="binary", ci=False)
    assert metrics["auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert metrics["ece"] == pytest.approx(expected["ece"], abs=1e-5)
    assert "test" in json.loads((out / "metrics.json").read_text())


def test_cli_evaluate_and_predict_accept_a_cv_directory(cv_dir, npz, tmp_path):
    out, _ = cv_dir
    metrics = json.loads(medattn("evaluate", out, "--json").stdout)
    assert metrics["n"] == 30
    assert metrics["ensemble"]["members"] == 2
    file = tmp_path / "case.png"
    Image.fromarray(np.load(npz)["test_images"][0]).save(file)
    result = json.loads(medattn("predict", out, file, "--json").stdout)
    (row,) = result["predictions"]
    assert row["class"] in ("0", "1")
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_resume_keeps_finished_folds_and_redoes_the_rest(npz, tmp_path):
    out = tmp_path / "cv"
    run_cv(_config(npz, epochs=1), out, settings=CVSettings(folds=2))
    kept = (out / "fold-0-0" / "model.safetensors").stat().st_mtime_ns
    (out / "fold-0-1" / "model.json").unlink()  # killed after its last epoch, before the card
    (out / "ensemble.json").unlink()
    with pytest.raises(RunDirError, match="unfinished cross-validation.*--resume"):
        evaluate_run(out)
    with pytest.raises(RunDirError, match="--resume"):
        run_cv(_config(npz, epochs=1), out, settings=CVSettings(folds=2))
    result = run_cv(RunConfig(), out, settings=CVSettings(folds=9), resume=True)  # the saved plan wins
    assert [f["status"] for f in result["folds"]] == ["kept", "resumed"]
    assert (out / "fold-0-0" / "model.safetensors").stat().st_mtime_ns == kept
    assert (out / "fold-0-1" / "model.json").is_file()
    assert evaluate_run(out)["ensemble"]["members"] == 2


def test_cv_groups_a_csv_by_patient(tmp_path):
    rows = ["path,label,patient_id"]
    rng = np.random.default_rng(0)
    for patient in range(12):
        for image in range(1 + patient % 3):
            name = f"img/p{patient}_{image}.png"
            (tmp_path / "img").mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / name)
            rows.append(f"{name},{'lesion' if patient % 2 else 'normal'},P{patient}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    config = _config(tmp_path / "data.csv", epochs=1)
    result = run_cv(config, tmp_path / "cv", settings=CVSettings(folds=3))
    assert result["settings"]["grouped_by_patient"]
    plan = json.loads((tmp_path / "cv" / "cv-plan.json").read_text())
    task = get_task("classification")
    patients = task.fold_pool(task.open(load_config(tmp_path / "cv" / "fold-0-0" / "config.yaml"))).groups
    assert len(patients) == len(plan["assignment"][0]) < 24  # a test split was carved (by patient) and kept out
    fold_of = {}
    for patient, fold in zip(patients, plan["assignment"][0], strict=True):
        assert fold_of.setdefault(patient, fold) == fold  # every image of a patient in the same fold


def test_ensemble_threshold_is_shared_only_when_members_agree():
    youden = [{"threshold": 0.3, "threshold_rule": "Youden's J on validation"}]
    assert ensemble_threshold(youden + [{"threshold": 0.5, "threshold_rule": "Youden's J on validation"}])[0] == 0.4
    mixed = youden + [{"threshold": 0.5, "threshold_rule": "fixed 0.5"}]
    assert ensemble_threshold(mixed)[0] == 0.5
    assert ensemble_threshold([{"threshold": None}, {"threshold": None}])[0] is None


# ---- the grid file and the search --------------------------------------------------------------------


def test_grid_file_errors_name_the_file_and_key():
    where = "grid.yaml"
    with pytest.raises(ConfigError, match="grid.yaml: unknown key.*fold"):
        grid_from_dict({"search": {"train.lr": [0.001]}, "fold": 3}, where=where)
    with pytest.raises(ConfigError, match="grid.yaml: search key 'train.weight_decy'.*did you mean train.weight_decay"):
        grid_from_dict({"search": {"train.weight_decy": [0.001]}}, where=where)
    with pytest.raises(ConfigError, match="'kernal_size'.*did you mean kernel_size"):
        grid_from_dict({"base": {"task": "classification"}, "search": {"model.options.kernal_size": [3]}}, where=where)
    with pytest.raises(ConfigError, match="grid.yaml: search key 'train.schedule', value 'linear'"):
        grid_from_dict({"search": {"train.schedule": ["linear"]}}, where=where)
    with pytest.raises(ConfigError, match="search.train.lr must be a non-empty list"):
        grid_from_dict({"search": {"train.lr": 0.001}}, where=where)
    with pytest.raises(ConfigError, match="grid.yaml: base.train: unknown key"):
        grid_from_dict({"base": {"train": {"lrate": 1}}, "search": {"train.lr": [0.001]}}, where=where)
    with pytest.raises(ConfigError, match="metric 'f1'"):
        grid_from_dict(
            {"base": {"task": "classification"}, "search": {"train.lr": [0.001]}, "metric": "f1"}, where=where
        )


def test_grid_points_merge_searched_options_onto_the_defaults():
    spec = grid_from_dict(
        {
            "base": {"task": "classification"},
            "search": {"model.options.kernel_size": [3, 5, 7], "model.options.depths": [[1, 1, 1], [2, 2, 2]]},
        },
        where="g.yaml",
    )
    assert spec.size == 6
    assert len(spec.points()) == 6
    config = point_config(spec, {"model.options.kernel_size": 5, "model.options.depths": [2, 2, 2]}, spatial_dims=3)
    assert config.model.options == {**DEFAULT_OPTIONS[3], "kernel_size": 5, "depths": [2, 2, 2]}
    lr = grid_from_dict({"search": {"train.lr": ["1e-3"]}, "base": {"train": {"lr": "3e-3"}}}, where="g.yaml")
    assert lr.search["train.lr"] == [0.001]
    assert lr.base.train.lr == 0.003


def test_shipped_example_grid_loads():
    from medattn.tune.space import load_grid

    spec = load_grid(Path(__file__).resolve().parents[1] / "examples" / "grid_attn_resnet.yaml")
    assert spec.search["model.options.kernel_size"] == [3, 5, 7]
    assert spec.size == 6
    assert spec.sampler == "grid"


def test_grid_search_writes_results_and_best_and_resumes(npz, tmp_path, monkeypatch):
    from medattn.tune import grid

    raw = {
        "base": {"model": {"options": {"widths": [8, 16, 32]}}, "train": {"epochs": 1, "batch_size": 16, "threads": 1}},
        "search": {"model.options.kernel_size": [3, 5]},
        "folds": 2,
        "trials": 1,
    }
    spec = grid_from_dict(raw, where="g.yaml")
    spec.base.data.path = str(npz)
    out = tmp_path / "grid"
    first = grid.run_grid(spec, out, quiet=True)
    assert [t["state"] for t in first["trials"]] == ["COMPLETE"]
    finished = {t["params"]["model.options.kernel_size"]: t["dir"] for t in first["trials"]}
    stamp = (out / next(iter(finished.values())) / "fold-0-0" / "model.json").stat().st_mtime_ns

    # the second point is cut short after its folds are trained (as by a kill before Optuna hears of it)
    real_run_cv = grid.run_cv

    def killed(*args, **kwargs):
        real_run_cv(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(grid, "run_cv", killed)
    spec.trials = None
    with pytest.raises(KeyboardInterrupt):
        grid.run_grid(spec, out, resume=True, quiet=True)
    monkeypatch.setattr(grid, "run_cv", real_run_cv)
    summary = grid.run_grid(spec, out, resume=True, quiet=True)

    states = {t["trial"]: (t["state"], t["params"]["model.options.kernel_size"]) for t in summary["trials"]}
    assert sorted(states.values()) == [("COMPLETE", 3), ("COMPLETE", 5), ("FAIL", states[1][1])]
    assert states[1][0] == "FAIL"
    assert states[2] == ("COMPLETE", states[1][1])
    cv = json.loads((out / "trial-2" / "cv.json").read_text())
    assert [f["status"] for f in cv["folds"]] == ["kept", "kept"]  # its finished folds were not trained again
    assert (out / next(iter(finished.values())) / "fold-0-0" / "model.json").stat().st_mtime_ns == stamp

    best = load_config(out / "best.yaml")  # what `medattn train --config` reads
    top = summary["best"]
    assert best.model.options == {"widths": [8, 16, 32], "kernel_size": top["params"]["model.options.kernel_size"]}
    assert best.data.path == str(npz)
    assert top["score"] == max(t["score"] for t in summary["trials"] if t["state"] == "COMPLETE")
    table = (out / "results.md").read_text()
    assert table.count("| complete |") == 2
    assert "interrupted; continued as trial 2" in table

    again = grid.run_grid(spec, out, resume=True, quiet=True)  # nothing left: no new trial
    assert len(again["trials"]) == 3
    spec.folds = 3
    with pytest.raises(ConfigError, match="differs from the search started"):
        grid.run_grid(spec, out, resume=True, quiet=True)


def test_cli_grid_and_cv_refuse_bad_input_before_writing(npz, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"search": {"model.options.kernel_size": [3]}, "sampler": "annealing"}))
    result = medattn("tune", "grid", "--data", npz, "--grid", bad, "--out", tmp_path / "g", check=False)
    assert result.returncode == 2
    assert f"{bad}: sampler 'annealing'" in result.stderr
    result = medattn("tune", "cv", "--data", npz, "--folds", 31, "--out", tmp_path / "c", check=False)
    assert result.returncode == 2
    assert "--folds 31: class" in result.stderr
    assert not (tmp_path / "g").exists()
    assert not (tmp_path / "c").exists()
