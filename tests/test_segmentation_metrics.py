"""Segmentation metrics against hand-worked cases, scikit-learn and scipy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from medattn.tasks.segment.metrics import CASE_KEYS, aggregate, case_metrics, surface


def _box(shape: tuple[int, ...], start: tuple[int, ...], size: tuple[int, ...], label: int = 1) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))] = label
    return labels


def test_two_squares_dice_iou_by_hand():
    truth = _box((10, 10), (1, 1), (4, 4))  # rows 1-4, cols 1-4: 16 pixels
    pred = _box((10, 10), (2, 3), (4, 4))  # rows 2-5, cols 3-6: 16 pixels
    # Overlap rows 2-4 (3) x cols 3-4 (2) = 6 pixels.
    # Dice = 2 * 6 / (16 + 16) = 12 / 32 = 0.375; IoU = 6 / (16 + 16 - 6) = 6 / 26.
    m = case_metrics(pred, truth, num_classes=2, spacing=(0.5, 2.0))
    assert list(m) == [1]
    assert set(m[1]) == set(CASE_KEYS)
    assert m[1]["dice"] == pytest.approx(0.375)
    assert m[1]["iou"] == pytest.approx(6 / 26)
    # 16 pixels of 0.5 x 2.0 mm^2 each.
    assert m[1]["volume_truth_mm3"] == pytest.approx(16.0)
    assert m[1]["volume_pred_mm3"] == pytest.approx(16.0)


def test_surface_is_four_connected_boundary():
    mask = _box((7, 7), (1, 1), (5, 5)).astype(bool)
    # 5x5 square: the 3x3 inside has all four face neighbours in the square; 25 - 9 = 16 boundary.
    assert surface(mask).sum() == 16
    # A pixel whose only outside neighbours are diagonal is interior with the cross element.
    plus = mask.copy()
    plus[1, 1] = False
    assert not surface(plus)[2, 2]
    # Outside the image counts as outside: a full image is all boundary along its edge.
    assert surface(np.ones((4, 4), dtype=bool)).sum() == 12


def test_small_shift_anisotropic_hand_worked():
    # Truth: a 3x3 square; pred: the same square one row further down; spacing 2 mm along rows.
    truth = _box((9, 9), (3, 3), (3, 3))
    pred = _box((9, 9), (4, 3), (3, 3))
    m = case_metrics(pred, truth, num_classes=2, spacing=(2.0, 1.0))[1]
    # In square coordinates (row, col): truth rows 0-2, pred rows 1-3; each surface is its 8
    # pixels other than the centre (truth (1,1), pred (2,1)).
    # pred -> truth: (1,0) (1,2) (2,0) (2,2) lie on the truth surface: 0; (1,1) is truth's centre,
    #   nearest truth surface (1,0) at 1 mm; (3,0) (3,1) (3,2) are one row below truth: 2 mm.
    #   -> [0, 0, 0, 0, 1, 2, 2, 2]; truth -> pred is its mirror image, the same distances.
    # HD95: 95th percentile of 8 sorted values at index 0.95 * 7 = 6.65, between 2 and 2: 2 mm.
    # ASSD: each direction sums to 1 + 3 * 2 = 7 mm over 8 pixels: (7 + 7) / (8 + 8) = 0.875 mm.
    assert m["hd95_mm"] == pytest.approx(2.0)
    assert m["assd_mm"] == pytest.approx(0.875)
    # Dice: overlap 2 rows x 3 = 6 of 9 + 9 -> 12 / 18.
    assert m["dice"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(("axis", "expected_mm"), [(0, 2.0), (1, 1.0), (2, 1.0)])
def test_cube_shift_distances_use_spacing(axis: int, expected_mm: float):
    shape, size = (16, 16, 16), 6
    truth = _box(shape, (5, 5, 5), (size,) * 3)
    start = [5, 5, 5]
    start[axis] += 1
    pred = _box(shape, tuple(start), (size,) * 3)
    m = case_metrics(pred, truth, num_classes=2, spacing=(2.0, 1.0, 1.0))[1]
    # The far cap of pred (36 voxels of its 152 surface voxels, over 5%) is one voxel beyond truth,
    # 2 mm away along axis 0 (1 mm along axes 1, 2); no surface voxel is farther than that.
    # A distance in voxels would give 1 along every axis.
    assert m["hd95_mm"] == pytest.approx(expected_mm)
    assert 0 < m["assd_mm"] <= expected_mm
    assert m["dice"] == pytest.approx(2 * 5 / 12)  # overlap 5 of 6 slices


def test_hd95_is_max_of_directed_percentiles():
    # Truth: a 10x10 square (36 surface pixels). Pred: the same square plus a stray 3-pixel blob.
    truth = _box((32, 32), (0, 0), (10, 10))
    pred = truth.copy()
    pred[4, 25:28] = 1
    m = case_metrics(pred, truth, num_classes=2, spacing=(1.0, 1.0))[1]
    # pred -> truth: 36 zeros and the blob at 16, 17, 18 px from truth's right edge (column 9).
    # 95th percentile of 39 values: index 0.95 * 38 = 36.1 -> 16 + 0.1 * (17 - 16) = 16.1.
    # truth -> pred: 36 zeros. Max of the two: 16.1. (Pooled, 75 values, index 70.3: 0.)
    assert m["hd95_mm"] == pytest.approx(16.1)
    # ASSD pools both directions: (16 + 17 + 18) / (39 + 36) = 0.68.
    assert m["assd_mm"] == pytest.approx(51 / 75)


def test_identical_masks():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(8, 9, 10))
    m = case_metrics(labels, labels.copy(), num_classes=3, spacing=(1.5, 0.7, 0.7))
    for scores in m.values():
        assert scores["dice"] == 1.0
        assert scores["iou"] == 1.0
        assert scores["hd95_mm"] == 0.0
        assert scores["assd_mm"] == 0.0


def test_empty_conventions():
    empty = np.zeros((6, 6), dtype=np.int64)
    square = _box((6, 6), (1, 1), (2, 2), label=2)
    # Class 1 absent from both; class 2 present only in truth (missed) or only in pred (spurious).
    both_empty = case_metrics(empty, square, num_classes=3, spacing=(1.0, 1.0))[1]
    assert both_empty == {
        **dict(dice=1.0, iou=1.0, hd95_mm=0.0, assd_mm=0.0),
        **dict(volume_truth_mm3=0.0, volume_pred_mm3=0.0),
    }
    for pred, truth in ((empty, square), (square, empty)):
        one_empty = case_metrics(pred, truth, num_classes=3, spacing=(1.0, 1.0))[2]
        assert one_empty["dice"] == 0.0
        assert one_empty["iou"] == 0.0
        assert math.isnan(one_empty["hd95_mm"])
        assert math.isnan(one_empty["assd_mm"])


def test_dice_iou_match_sklearn_and_background_option():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, size=(6, 7, 8))
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 4, size=truth.shape))
    m = case_metrics(pred, truth, num_classes=4, spacing=(1.0, 1.0, 1.0), include_background=True)
    assert list(m) == [0, 1, 2, 3]
    for c, scores in m.items():
        t, p = (truth == c).ravel(), (pred == c).ravel()
        assert scores["dice"] == pytest.approx(f1_score(t, p))
        assert scores["iou"] == pytest.approx(jaccard_score(t, p))
    assert list(case_metrics(pred, truth, num_classes=4, spacing=(1.0, 1.0, 1.0))) == [1, 2, 3]


def test_distances_match_brute_force():
    rng = np.random.default_rng(2)
    truth = (rng.random((7, 8, 6)) < 0.3).astype(int)
    pred = (rng.random((7, 8, 6)) < 0.3).astype(int)
    spacing = np.array([2.5, 1.0, 0.5])
    m = case_metrics(pred, truth, num_classes=2, spacing=tuple(spacing))[1]
    # Brute force over all pairs of surface voxels, no cropping and no distance transform.
    sp = np.argwhere(surface(pred.astype(bool))) * spacing
    st = np.argwhere(surface(truth.astype(bool))) * spacing
    pair = np.linalg.norm(sp[:, None] - st[None], axis=-1)
    to_truth, to_pred = pair.min(axis=1), pair.min(axis=0)
    assert m["hd95_mm"] == pytest.approx(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))
    assert m["assd_mm"] == pytest.approx(np.concatenate([to_truth, to_pred]).mean())


def test_input_validation():
    ok = np.zeros((4, 5), dtype=int)
    with pytest.raises(ValueError, match=r"same shape.*\(4, 5\).*\(4, 6\)"):
        case_metrics(ok, np.zeros((4, 6), dtype=int), num_classes=2, spacing=(1.0, 1.0))
    bad = ok.copy()
    bad[0, 0] = 3
    with pytest.raises(ValueError, match=r"truth labels must lie in \[0, 2\].*found labels in \[0, 3\]"):
        case_metrics(ok, bad, num_classes=3, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"pred labels must lie in \[0, 2\].*\[-1, 0\]"):
        case_metrics(-np.eye(4, 5, dtype=int), ok, num_classes=3, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="one value per axis"):
        case_metrics(ok, ok, num_classes=2, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        case_metrics(ok, ok, num_classes=2, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="integer labels"):
        case_metrics(ok + 0.5, ok, num_classes=2, spacing=(1.0, 1.0))


def _case(dice: float, hd95: float) -> dict[str, float]:
    return dict(dice=dice, iou=dice / (2 - dice), hd95_mm=hd95, assd_mm=hd95 / 4)


def test_aggregate_means_skip_nan_and_count_undefined():
    nan = float("nan")
    cases = [
        {1: _case(0.8, 2.0), 2: _case(0.0, nan)},
        {1: _case(0.6, nan), 2: _case(0.5, 4.0)},
        {1: _case(1.0, 6.0), 2: _case(0.7, 8.0)},
    ]
    out = aggregate(cases, class_names=["background", "liver", "tumour"], n_boot=200)
    assert out["n"] == 3
    assert out["dice_per_class"] == pytest.approx({"liver": 0.8, "tumour": 0.4})
    assert out["dice_mean"] == pytest.approx(0.6)  # (0.8 + 0.4) / 2
    assert out["iou_per_class"]["liver"] == pytest.approx(np.mean([0.8 / 1.2, 0.6 / 1.4, 1.0]))
    assert out["hd95_mm_per_class"] == pytest.approx({"liver": 4.0, "tumour": 6.0})  # (2 + 6) / 2, (4 + 8) / 2
    assert out["assd_mm_per_class"] == pytest.approx({"liver": 1.0, "tumour": 1.5})
    assert out["undefined_distances"] == {"liver": 1, "tumour": 1}
    # Names of the scored classes only give the same result.
    assert aggregate(cases, class_names=["liver", "tumour"], n_boot=200) == out
    json.dumps(out)  # serialisable


def test_aggregate_bootstrap_ci_contains_mean_and_is_deterministic():
    rng = np.random.default_rng(3)
    cases = [{1: _case(d1, 1.0), 2: _case(d2, 1.0)} for d1, d2 in rng.uniform(0.4, 0.9, size=(30, 2))]
    out = aggregate(cases, class_names=["a", "b"], n_boot=500, seed=7)
    for name, (lo, hi) in out["dice_ci_per_class"].items():
        assert lo < out["dice_per_class"][name] < hi
    lo, hi = out["dice_mean_ci"]
    assert lo < out["dice_mean"] < hi
    assert hi - lo < 0.2  # 30 cases of spread 0.5: a CI of the mean, not of the cases
    assert aggregate(cases, class_names=["a", "b"], n_boot=500, seed=7) == out
    assert aggregate(cases, class_names=["a", "b"], n_boot=500, seed=8)["dice_mean_ci"] != out["dice_mean_ci"]


def test_aggregate_validation():
    with pytest.raises(ValueError, match="at least one case"):
        aggregate([], class_names=["a"])
    with pytest.raises(ValueError, match="same classes"):
        aggregate([{1: _case(1, 0)}, {2: _case(1, 0)}], class_names=["a"])
    with pytest.raises(ValueError, match="class_names"):
        aggregate([{1: _case(1, 0), 2: _case(1, 0)}], class_names=["a"])


def test_case_metrics_feed_aggregate():
    truth = _box((12, 12, 12), (2, 2, 2), (5, 5, 5))
    cases = [case_metrics(p, truth, num_classes=2, spacing=(1.0, 1.0, 1.0)) for p in (truth, np.zeros_like(truth))]
    out = aggregate(cases, class_names=["bg", "organ"], n_boot=50)
    assert out["dice_per_class"] == {"organ": 0.5}
    assert out["hd95_mm_per_class"] == {"organ": 0.0}
    assert out["undefined_distances"] == {"organ": 1}


def test_dice_per_patient_sums_overlap_over_slices_so_empty_slices_do_not_inflate_it():
    from medattn.tasks.segment.metrics import by_patient

    truth = np.zeros((8, 8), int)
    truth[2:4, 2:4] = 1
    half = np.zeros((8, 8), int)
    half[2:4, 2:3] = 1
    empty = np.zeros((8, 8), int)
    scored = [
        case_metrics(p, t, num_classes=2, spacing=(1, 1)) for p, t in ((half, truth), (empty, empty), (truth, truth))
    ]
    summary = by_patient(scored, ["a", "a", "b"], class_names=["tumour"])
    # patient a: overlap 2 of |P| + |T| = 6 -> 2/3 over both slices (the empty slice adds nothing); b: 1
    assert summary["n"] == 2
    assert summary["dice_per_class"]["tumour"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["dice_mean_ci"][0] <= summary["dice_mean"] <= summary["dice_mean_ci"][1]
