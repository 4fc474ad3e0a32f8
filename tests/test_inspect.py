"""`data inspect`: counts, patient and content leakage across splits, the recommended loss."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.tasks.classify.inspect import inspect_source, recommend
from medattn.tasks.classify.sources import open_source

BREAST = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist" / "breastmnist.npz"


@pytest.mark.skipif(not BREAST.is_file(), reason=f"real data not found at {BREAST}")
def test_breastmnist_counts_and_its_one_cross_split_duplicate():
    report = inspect_source(open_source(BREAST))
    assert report["class_counts"] == {"train": [147, 399], "val": [21, 57], "test": [42, 114]}
    assert report["images"]["shapes"] == {"1x28x28": 780}
    assert report["duplicates_across_splits"] == 1
    example = report["duplicate_examples"][0]["splits"]
    with np.load(BREAST) as archive:  # the flagged pair really is one image in two splits
        train, test = archive["train_images"][example["train"][0]], archive["test_images"][example["test"][0]]
    assert np.array_equal(train, test)
    assert report["recommendation"]["loss"] == "weighted_ce"


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def test_manifest_with_patient_and_content_leakage(tmp_path):
    rows = ["path,label,patient_id,split"]
    for i, (label, patient, split) in enumerate(
        [("a", "P1", "train"), ("b", "P2", "train"), ("a", "P3", "train"), ("b", "P1", "test"), ("a", "P4", "test")]
    ):
        _png(tmp_path / f"{i}.png", 200 if i == 4 else i)  # image 4 differs; the rest are distinct too
        rows.append(f"{i}.png,{label},{patient},{split}")
    _png(tmp_path / "copy.png", 1)  # the same pixels as 1.png, placed in test
    rows.append("copy.png,b,P5,test")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    report = inspect_source(open_source(tmp_path / "m.csv"))
    assert report["patients"]["in_more_than_one_split"] == 1
    assert report["patients"]["examples"] == ["P1"]
    assert report["duplicates_across_splits"] == 1
    places = report["duplicate_examples"][0]["splits"]
    assert Path(places["train"][0]).name == "1.png"
    assert Path(places["test"][0]).name == "copy.png"
    assert report["images"]["spacing_mm"] == {"1.0x1.0": 6}


@pytest.mark.parametrize(
    ("counts", "loss"), [([100, 90], "ce"), ([100, 30], "weighted_ce"), ([500, 20], "focal"), ([0, 0], "ce")]
)
def test_recommendation_follows_the_imbalance(counts, loss):
    assert recommend(counts, "binary")["loss"] == loss


def test_cli_json_has_the_promised_keys(tmp_path):
    for label in ("a", "b"):
        for i in range(2):
            _png(tmp_path / label / f"{i}.png", i + (10 if label == "b" else 0))
    out = subprocess.run(
        [sys.executable, "-m", "medattn", "data", "inspect", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    report = json.loads(out)
    assert report["class_counts"] == {"train": [2, 2]}
    assert report["duplicates_across_splits"] == 0
