"""The procedural phantom: deterministic, annotated consistently, learnable but without trivial cues."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from medattn.data.phantom import (
    CONTRASTS,
    LABELS,
    make_classification_set,
    make_phantom,
    make_segmentation_set,
    save_medmnist_npz,
)

MEDMNIST_KEYS = {f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "labels")}


def _dog_peak(images: np.ndarray) -> np.ndarray:
    """Strongest difference-of-Gaussians response per image: a matched filter for small blobs."""
    return np.array(
        [np.abs(ndimage.gaussian_filter(im, 0.8) - ndimage.gaussian_filter(im, 2.0)).max() for im in images[:, 0]]
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_same_seed_same_arrays_and_other_seed_differs(spatial_dims):
    a, b, c = (make_phantom(spatial_dims=spatial_dims, size=20, seed=seed, lesions=2, channels=2) for seed in (4, 4, 5))
    for name in ("image", "mask", "boxes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.mask, c.mask)

    x1, y1 = make_classification_set(n=12, spatial_dims=spatial_dims, size=16, seed=3)
    x2, y2 = make_classification_set(n=12, spatial_dims=spatial_dims, size=16, seed=3)
    x3, _ = make_classification_set(n=12, spatial_dims=spatial_dims, size=16, seed=4)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    s1, m1 = make_segmentation_set(n=3, spatial_dims=spatial_dims, size=16, seed=1)
    s2, m2 = make_segmentation_set(n=3, spatial_dims=spatial_dims, size=16, seed=1)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(m1, m2)


def test_a_sample_does_not_depend_on_the_set_size():
    small, _ = make_segmentation_set(n=2, size=16, seed=9)
    large, _ = make_segmentation_set(n=5, size=16, seed=9)
    np.testing.assert_array_equal(small, large[:2])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes_dtypes_and_ranges(spatial_dims):
    size = 24
    spatial = (size,) * spatial_dims
    p = make_phantom(spatial_dims=spatial_dims, size=size, seed=0, lesions=2, channels=3)
    assert p.image.shape == (3, *spatial)
    assert p.image.dtype == np.float32
    assert p.image.min() >= 0.0
    assert p.image.max() <= 1.0
    assert p.mask.shape == spatial
    assert p.mask.dtype == np.uint8
    assert p.boxes.shape == (2, 2 * spatial_dims)
    assert p.boxes.dtype == np.float32
    assert p.label == 1
    assert set(p.contrasts) == set(CONTRASTS)
    for index, name in enumerate(CONTRASTS):
        assert p.contrasts[name].shape == spatial
        assert p.contrasts[name].dtype == np.float32
        np.testing.assert_array_equal(p.image[index], p.contrasts[name])

    empty = make_phantom(spatial_dims=spatial_dims, size=size, seed=0, lesions=0)
    assert empty.image.shape == (1, *spatial)
    assert empty.label == 0
    assert empty.boxes.shape == (0, 2 * spatial_dims)
    assert LABELS["lesion"] not in np.unique(empty.mask)

    x, y = make_classification_set(n=6, spatial_dims=spatial_dims, size=12, seed=0)
    assert x.shape == (6, 1, *(12,) * spatial_dims)
    assert x.dtype == np.float32
    assert y.shape == (6,)
    assert y.dtype == np.int64
    images, masks = make_segmentation_set(n=4, spatial_dims=spatial_dims, size=20, seed=0)
    assert images.shape == (4, 1, *(20,) * spatial_dims)
    assert images.dtype == np.float32
    assert masks.shape == (4, *(20,) * spatial_dims)
    assert masks.dtype == np.uint8


@pytest.mark.parametrize(("spatial_dims", "seed"), [(2, 0), (2, 1), (2, 2), (3, 0), (3, 1)])
def test_lesions_lie_inside_organs(spatial_dims, seed):
    p = make_phantom(spatial_dims=spatial_dims, size=32, seed=seed, lesions=3)
    assert set(np.unique(p.mask)) == {0, 1, 2}
    # The same anatomy with lesions labelled as organ: every lesion voxel must be organ there.
    merged = make_phantom(spatial_dims=spatial_dims, size=32, seed=seed, lesions=3, label_map={"lesion": 1})
    lesion = p.mask == 2
    assert (merged.mask[lesion] == 1).all()
    np.testing.assert_array_equal(merged.mask[~lesion], p.mask[~lesion])


def test_label_map_separates_body_from_air():
    default = make_phantom(size=32, seed=1, lesions=1)
    mapped = make_phantom(size=32, seed=1, lesions=1, label_map={"body": 3, "lesion": 7})
    np.testing.assert_array_equal(mapped.mask == 7, default.mask == 2)
    assert (mapped.mask == 3).any()
    np.testing.assert_array_equal((mapped.mask == 0) | (mapped.mask == 3), default.mask == 0)
    with pytest.raises(ValueError, match="unknown key 'tumour'"):
        make_phantom(label_map={"tumour": 2})


@pytest.mark.parametrize(("spatial_dims", "seed"), [(2, 0), (2, 3), (2, 7), (3, 0), (3, 2)])
def test_boxes_enclose_each_lesion_exactly(spatial_dims, seed):
    p = make_phantom(spatial_dims=spatial_dims, size=40, seed=seed, lesions=3)
    components, count = ndimage.label(p.mask == 2, structure=np.ones((3,) * spatial_dims))
    assert count == len(p.boxes) == 3  # separate lesions, even under full connectivity
    expected = sorted(
        tuple(float(v) for v in [s.start for s in sl] + [s.stop - 1 for s in sl])
        for sl in ndimage.find_objects(components)
    )
    assert sorted(tuple(box.tolist()) for box in p.boxes) == expected


def test_binary_classes_are_balanced():
    _, labels = make_classification_set(n=101, size=16, seed=0)
    assert set(np.unique(labels)) == {0, 1}
    assert 0.4 <= labels.mean() <= 0.6
    _, labels = make_classification_set(n=40, size=28, num_classes=4, seed=0)
    np.testing.assert_array_equal(np.bincount(labels), [10, 10, 10, 10])  # class c has c lesions


def test_image_mean_and_std_do_not_leak_the_label():
    for spatial_dims, size, n in ((2, 28, 400), (3, 16, 200)):
        images, labels = make_classification_set(n=n, spatial_dims=spatial_dims, size=size, seed=11)
        axes = tuple(range(1, images.ndim))
        features = np.stack([images.mean(axis=axes), images.std(axis=axes)], axis=1)
        scores = cross_val_predict(LogisticRegression(), features, labels, cv=5, method="predict_proba")[:, 1]
        assert roc_auc_score(labels, scores) < 0.7, (spatial_dims, size)


def test_a_matched_filter_finds_the_lesions_and_difficulty_orders_it():
    auc = {}
    for difficulty in ("easy", "medium", "hard"):
        images, labels = make_classification_set(n=400, size=32, seed=12, difficulty=difficulty)
        auc[difficulty] = roc_auc_score(labels, _dog_peak(images))
    assert auc["easy"] > 0.8
    assert auc["medium"] > 0.7
    assert auc["easy"] > auc["medium"] > auc["hard"] > 0.55


def test_paired_contrasts_share_geometry_but_not_intensities():
    p = make_phantom(size=64, seed=2, lesions=2, channels=3, label_map={"body": 3})
    regions = [p.mask == value for value in np.unique(p.mask)]
    for name, image in p.contrasts.items():
        fitted = np.zeros_like(image)
        for region in regions:
            fitted[region] = image[region].mean()
        explained = 1 - np.var(image - fitted) / np.var(image)
        assert explained > 0.6, name  # the one mask explains most of every contrast
    t1, t2 = p.contrasts["t1"], p.contrasts["t2"]
    organ = p.mask == 1
    assert np.abs(t1[organ] - t2[organ]).mean() > 0.1
    lesion_t1 = t1[p.mask == 2].mean() - t1[organ].mean()
    assert not np.isclose(lesion_t1, t2[p.mask == 2].mean() - t2[organ].mean(), atol=0.02)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_medmnist_npz_round_trip(tmp_path, spatial_dims):
    path = tmp_path / "out" / "phantom.npz"
    path.parent.mkdir()
    path.write_bytes(b"stale")  # replaced whole, never appended to
    save_medmnist_npz(path, n_train=10, n_val=4, n_test=6, spatial_dims=spatial_dims, size=12, seed=5)
    assert [f.name for f in path.parent.iterdir()] == ["phantom.npz"]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    assert set(arrays) == MEDMNIST_KEYS
    for split, n in (("train", 10), ("val", 4), ("test", 6)):
        assert arrays[f"{split}_images"].shape == (n, *(12,) * spatial_dims)
        assert arrays[f"{split}_images"].dtype == np.uint8
        assert arrays[f"{split}_labels"].shape == (n, 1)
        assert np.issubdtype(arrays[f"{split}_labels"].dtype, np.integer)
    images, labels = make_classification_set(n=10, spatial_dims=spatial_dims, size=12, seed=5)
    np.testing.assert_array_equal(arrays["train_labels"][:, 0], labels)
    np.testing.assert_array_equal(arrays["train_images"], np.round(images[:, 0] * 255).astype(np.uint8))
    assert not np.array_equal(arrays["val_images"], arrays["train_images"][:4])  # splits are separate draws


def test_many_lesions_fit_at_small_sizes():
    images, labels = make_classification_set(n=10, size=28, num_classes=5, seed=0)
    assert labels.max() == 4
    p = make_phantom(size=28, seed=0, lesions=4)
    assert len(p.boxes) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
        ({"size": 4}, "size must be at least 8"),
        ({"channels": 4}, "channels must be 1-3"),
        ({"lesions": -1}, "lesions must be >= 0"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_phantom(**kwargs)


def test_bad_difficulty_lists_the_choices():
    with pytest.raises(ValueError, match="easy, medium, hard"):
        make_classification_set(n=2, difficulty="brutal")


def test_generator_does_not_import_torch():
    code = "import sys, medattn.data.phantom; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
