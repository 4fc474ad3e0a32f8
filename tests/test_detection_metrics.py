"""Detection metrics: COCO AP and AR as MONAI (nnDetection's COCO code) computes them, in 2D and 3D; values worked
out by hand for AP, AP by size and FROC; bootstrap resamples as weighted images."""

from __future__ import annotations

import numpy as np
import pytest

from medattn.tasks.detect.froc import froc, hits_of, weighted_froc
from medattn.tasks.detect.metrics import ap_table, coco_metrics, match_image
from medattn.tasks.detect.report import score_detections

NAMES = ["a", "b", "c"]


def _random_set(rng: np.random.Generator, dims: int, images: int = 12):
    preds, truths = [], []
    for _ in range(images):
        g = int(rng.integers(0, 6))
        lo = rng.uniform(0, 80, (g, dims))
        gt = np.concatenate([lo, lo + rng.uniform(4, 40, (g, dims))], 1)
        gl = rng.integers(0, 3, g)
        keep = rng.random(g) < 0.8
        found = gt[keep] + rng.normal(0, 2.5, gt[keep].shape)
        n = int(rng.integers(0, 5))
        lo = rng.uniform(0, 80, (n, dims))
        boxes = np.concatenate([found, np.concatenate([lo, lo + rng.uniform(4, 40, (n, dims))], 1)])
        boxes = np.concatenate([np.minimum(boxes[:, :dims], boxes[:, dims:] - 1), boxes[:, dims:]], 1)
        labels = np.concatenate([gl[keep], rng.integers(0, 3, n)])
        preds.append({"boxes": boxes, "labels": labels, "scores": rng.random(len(boxes))})
        truths.append({"boxes": gt, "labels": gl})
    return preds, truths


@pytest.mark.parametrize("dims", [2, 3])
def test_coco_ap_and_ar_match_monai(dims):
    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch
    from monai.data.box_utils import box_iou

    preds, truths = _random_set(np.random.default_rng(dims), dims)
    metric = COCOMetric(
        classes=NAMES, iou_list=(0.5,), iou_range=(0.5, 0.95, 0.05), max_detection=(100,), verbose=False
    )
    matched = matching_batch(
        iou_fn=box_iou,
        iou_thresholds=metric.iou_thresholds,
        pred_boxes=[p["boxes"] for p in preds],
        pred_classes=[p["labels"] for p in preds],
        pred_scores=[p["scores"] for p in preds],
        gt_boxes=[t["boxes"] for t in truths],
        gt_classes=[t["labels"] for t in truths],
    )
    theirs = metric(matched)[0]
    ours = coco_metrics([match_image(p, t, 3) for p, t in zip(preds, truths, strict=True)], NAMES)
    assert ours["map"] == pytest.approx(theirs["mAP_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-6)
    assert ours["map50"] == pytest.approx(theirs["AP_IoU_0.50_MaxDet_100"], abs=1e-6)
    assert ours["ar100"] == pytest.approx(theirs["mAR_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-6)
    for name in NAMES:
        assert ours["ap50_per_class"][name] == pytest.approx(theirs[f"{name}_AP_IoU_0.50_MaxDet_100"], abs=1e-6)
    assert 0 < ours["map"] < ours["map50"] < 1


def _box(lo, side):
    return [lo, lo, lo + side, lo + side]


def test_ap_by_hand_a_false_positive_above_a_true_one():
    truth = {"boxes": np.array([_box(0, 10), _box(50, 10)]), "labels": np.array([0, 0])}
    pred = {"boxes": np.array([_box(100, 10), _box(0, 10)]), "scores": np.array([0.9, 0.8]), "labels": np.array([0, 0])}
    metrics = coco_metrics([match_image(pred, truth, 1)], ["a"])
    # ranked: FP, TP -> precision 1/2 at recall 1/2; the 51 recall points 0..0.5 read 1/2, the rest 0
    assert metrics["map50"] == pytest.approx(51 / 101 * 0.5)
    assert metrics["map"] == pytest.approx(51 / 101 * 0.5)  # the match is exact at every threshold


def test_ap_by_size_ignores_boxes_of_other_sizes():
    truth = {"boxes": np.array([_box(0, 10), _box(100, 120)]), "labels": np.array([0, 0])}
    pred = {"boxes": np.array([_box(100, 120)]), "scores": np.array([0.9]), "labels": np.array([0])}
    metrics = coco_metrics([match_image(pred, truth, 1)], ["a"])
    assert metrics["ap_small"] == 0.0  # the small box was missed
    assert metrics["ap_large"] == 1.0  # the large one found, the small one not counted there
    assert np.isnan(metrics["ap_medium"])  # no medium box at all


def test_froc_by_hand():
    """Two images, 2 lesions: a hit at 0.9, a false positive at 0.8, a duplicate at 0.7, the second hit at 0.6."""
    truth = [
        {"boxes": np.array([_box(0, 10)]), "labels": np.array([0])},
        {"boxes": np.array([_box(20, 10)]), "labels": np.array([0])},
    ]
    first = np.array([_box(1, 8), _box(60, 5), _box(2, 8)])
    preds = [
        {"boxes": first, "scores": np.array([0.9, 0.8, 0.7]), "labels": np.array([0, 0, 0])},
        {"boxes": np.array([_box(21, 8)]), "scores": np.array([0.6]), "labels": np.array([0])},
    ]
    hits = [hits_of(p, t) for p, t in zip(preds, truth, strict=True)]
    assert [h.hit.tolist() for h in hits] == [[True, False], [True]]  # the duplicate is neither
    result = froc(hits)
    # false positives per image: 0 after the first hit, 0.5 after the false one; the second hit comes at 0.5
    expected = {"0.125": 0.5, "0.25": 0.5, "0.5": 1.0, "1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0}
    assert result["froc_sensitivity"] == expected
    assert result["froc"] == pytest.approx(np.mean(list(expected.values())))


def test_a_resample_is_the_ap_of_weighted_images():
    """An image drawn twice and the others not at all scores as that image alone."""
    preds, truths = _random_set(np.random.default_rng(5), 2, images=6)
    results = [match_image(p, t, 3) for p, t in zip(preds, truths, strict=True)]
    weights = np.zeros((1, 6))
    weights[0, 2] = 2.0
    alone = ap_table([results[2]], 3, np.ones((1, 1)))
    np.testing.assert_allclose(ap_table(results, 3, weights), alone, equal_nan=True)
    hits = [hits_of(p, t) for p, t in zip(preds, truths, strict=True)]
    np.testing.assert_allclose(weighted_froc(hits, weights)[0], weighted_froc([hits[2]], np.ones((1, 1)))[0])


def test_intervals_hold_the_estimate():
    preds, truths = _random_set(np.random.default_rng(7), 2, images=30)
    metrics = score_detections(preds, truths, NAMES, ci=True)
    for key in ("map50", "map", "froc"):
        low, high = metrics[f"{key}_ci"]
        assert low < metrics[key] < high
    assert metrics["n"] == 30
