"""Dataset sources: MedMNIST npz, class-per-folder trees, CSV manifests; split carving by patient."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.errors import DataError, ReadError
from medattn.tasks.classify.sources import ensure_splits, open_source

MEDMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"


def _png(path, value, size=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("name", "task", "sizes", "classes"),
    [
        ("breastmnist", "binary", {"train": 546, "val": 78, "test": 156}, ["malignant", "normal, benign"]),
        ("pneumoniamnist", "binary", {"train": 4708, "val": 524, "test": 624}, ["normal", "pneumonia"]),
        ("adrenalmnist3d", "binary", {"train": 1188, "val": 98, "test": 298}, ["normal", "hyperplasia"]),
    ],
)
def test_official_medmnist_splits(name, task, sizes, classes):
    path = MEDMNIST / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    source = open_source(path)
    assert source.labels == task
    assert {k: len(v) for k, v in source.splits.items()} == sizes
    assert source.class_names == classes
    assert sum(source.class_counts("train")) == sizes["train"]


def test_folder_tree_with_split_folders(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for label, value in (("benign", 10), ("malignant", 200)):
            for i in range(n):
                _png(tmp_path / split / label / f"{i}.png", value)
    source = open_source(tmp_path)
    assert source.kind == "folder"
    assert source.labels == "binary"
    assert source.class_names == ["benign", "malignant"]
    assert {k: len(v) for k, v in source.splits.items()} == {"train": 8, "val": 4, "test": 4}
    assert source.class_counts("val") == [2, 2]


def test_folder_tree_three_classes_is_multiclass(tmp_path):
    for label in ("a", "b", "c"):
        _png(tmp_path / label / "x.png", 5)
    assert open_source(tmp_path).labels == "multiclass"


def test_csv_manifest_patients_never_straddle_splits(tmp_path):
    rows = ["path,label,patient_id"]
    for patient in range(20):
        for image in range(3):
            label = "tumour" if patient % 2 else "normal"
            _png(tmp_path / "img" / f"p{patient}_{image}.png", patient)
            rows.append(f"img/p{patient}_{image}.png,{label},P{patient}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    source = open_source(tmp_path / "manifest.csv")
    ensure_splits(source, val_fraction=0.2, test_fraction=0.2, seed=0)
    patients = {name: set(split.patient_ids) for name, split in source.splits.items()}
    assert set(patients) == {"train", "val", "test"}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert sum(len(s) for s in source.splits.values()) == 60


def test_csv_multilabel_and_split_column(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    (tmp_path / "m.csv").write_text("path,label,split\na.png,effusion;nodule,train\nb.png,nodule,test\n")
    source = open_source(tmp_path / "m.csv")
    assert source.labels == "multilabel"
    assert source.class_names == ["effusion", "nodule"]
    assert source.splits["train"].labels.tolist() == [[1.0, 1.0]]
    assert source.splits["test"].labels.tolist() == [[0.0, 1.0]]


def test_task_override_is_checked(tmp_path):
    for label in ("a", "b", "c"):
        _png(tmp_path / label / "x.png", 5)
    assert open_source(tmp_path, labels="ordinal").labels == "ordinal"
    with pytest.raises(DataError, match="binary"):
        open_source(tmp_path, labels="binary")
    with pytest.raises(DataError, match="multilabel"):
        open_source(tmp_path, labels="multilabel")


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="empty folder"):
        open_source(tmp_path)


def test_class_folders_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_source(tmp_path)


def test_csv_pointing_at_missing_files_names_them(tmp_path):
    _png(tmp_path / "here.png", 1)
    (tmp_path / "m.csv").write_text("path,label\nhere.png,a\ngone.png,b\n")
    with pytest.raises(DataError, match=r"m\.csv.*line 3.*gone\.png"):
        open_source(tmp_path / "m.csv")


def test_csv_without_required_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\nx.png,a\n")
    with pytest.raises(DataError, match="needs the column.s. path, label"):
        open_source(tmp_path / "m.csv")


def test_npz_labels_not_matching_images(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, train_images=np.zeros((5, 8, 8), np.uint8), train_labels=np.zeros((4, 1), np.int64))
    with pytest.raises((ReadError, DataError), match="bad.npz"):
        open_source(path)


def test_npz_without_train_split(tmp_path):
    path = tmp_path / "only_test.npz"
    np.savez(path, test_images=np.zeros((5, 8, 8), np.uint8), test_labels=np.zeros((5, 1), np.int64))
    with pytest.raises((ReadError, DataError), match="train"):
        open_source(path)


def test_unknown_data_kind(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="expected an .npz"):
        open_source(tmp_path / "x.txt")


def test_npz_with_nan_pixels(tmp_path):
    path = tmp_path / "nan.npz"
    images = np.zeros((4, 8, 8), np.float32)
    images[1, 2, 3] = np.nan
    np.savez(path, train_images=images, train_labels=np.array([[0], [1], [0], [1]]))
    with pytest.raises(ReadError, match=r"nan\.npz.*NaN"):
        open_source(path)


def test_npz_that_is_not_a_zip(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_text("not an archive")
    with pytest.raises(ReadError, match="fake.npz"):
        open_source(path)


def test_class_names_must_match_the_labels(tmp_path):
    for label in ("a", "b"):
        _png(tmp_path / label / "x.png", 5)
    with pytest.raises(DataError, match="3 class names"):
        open_source(tmp_path, class_names=["x", "y", "z"])
