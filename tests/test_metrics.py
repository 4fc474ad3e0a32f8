"""Classification metrics against hand-worked cases and scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

from medattn.evaluate.bootstrap import (
    bootstrap_ci,
    bootstrap_ci_weighted,
    weighted_accuracy,
    weighted_auc,
)
from medattn.evaluate.calibration import expected_calibration_error, reliability_bins
from medattn.tasks.classify.metrics import (
    accuracy,
    auc_score,
    classification_metrics,
    predictions,
    threshold_for_sensitivity,
    youden_threshold,
)

# Binary hand example: 5 negatives, 3 positives.
HAND_Y = np.array([0, 0, 0, 0, 0, 1, 1, 1])
HAND_P1 = np.array([0.1, 0.55, 0.35, 0.8, 0.2, 0.7, 0.3, 0.9])
HAND_PROBS = np.stack([1 - HAND_P1, HAND_P1], axis=1)


REQUIRED_KEYS = {
    *("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1_macro", "ece", "n"),
    *("confusion_matrix", "auc_ci", "acc_ci", "per_class"),
}


def _random_probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.dirichlet(np.ones(k), size=n)


def _sklearn_auc(y: np.ndarray, probs: np.ndarray, task: str) -> float:
    """Reference AUC from roc_auc_score: per column, mean over columns with both values present."""
    if task == "binary":
        y, probs = (y == 1)[:, None], probs[:, 1:]
    elif task != "multilabel":
        y = y[:, None] == np.arange(probs.shape[1])
    aucs = [roc_auc_score(y[:, c], probs[:, c]) for c in range(probs.shape[1]) if 0 < y[:, c].sum() < len(y)]
    return float(np.mean(aucs)) if aucs else float("nan")


def _python_types_only(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _python_types_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_python_types_only(v) for v in value)
    return type(value) in (int, float, str, bool)


def test_binary_hand_example() -> None:
    m = classification_metrics(HAND_Y, HAND_PROBS, task="binary", ci=False)
    # AUC: negatives below each positive: 0.7 -> 4 (0.1, 0.55, 0.35, 0.2), 0.3 -> 2, 0.9 -> 5;
    # 11 of 3 * 5 = 15 pairs.
    assert m["auc"] == pytest.approx(11 / 15)
    # At p > 0.5: negatives predicted [0, 1, 0, 1, 0] -> TN 3, FP 2; positives [1, 0, 1] -> TP 2, FN 1.
    assert m["acc"] == pytest.approx(5 / 8)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 5)
    assert m["balanced_acc"] == pytest.approx((2 / 3 + 3 / 5) / 2)
    # F1 class 1: 2*2 / (4 + 2 + 1) = 4/7; class 0: 2*3 / (6 + 1 + 2) = 2/3.
    assert m["f1_macro"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert m["confusion_matrix"] == [[3, 2], [1, 2]]
    assert m["per_class"]["1"]["support"] == 3
    assert m["per_class"]["0"]["sensitivity"] == pytest.approx(3 / 5)
    assert m["threshold"] == 0.5
    assert m["n"] == 8


def test_binary_threshold_changes_acc() -> None:
    # threshold 0.6: the 0.55 negative becomes negative -> TN 4, FP 1, TP 2: 6/8.
    assert accuracy(HAND_Y, HAND_PROBS, task="binary", threshold=0.6) == pytest.approx(6 / 8)
    # Strictly greater, as MedMNIST: at 0.7 the 0.7 positive is negative -> TN 4, TP 1: 5/8.
    assert accuracy(HAND_Y, HAND_PROBS, task="binary", threshold=0.7) == pytest.approx(5 / 8)
    m = classification_metrics(HAND_Y, HAND_PROBS, task="binary", threshold=0.6, ci=False)
    assert m["acc"] == pytest.approx(6 / 8)
    assert m["threshold"] == 0.6


def test_binary_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    probs = _random_probs(rng, 500, 2)
    m = classification_metrics(y, probs, task="binary", ci=False)
    assert m["auc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))
    assert m["acc"] == pytest.approx(accuracy_score(y, probs[:, 1] > 0.5))
    assert m["f1_macro"] == pytest.approx(f1_score(y, probs[:, 1] > 0.5, average="macro"))
    # (N, 1) labels are accepted.
    assert auc_score(y[:, None], probs, task="binary") == pytest.approx(m["auc"])


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_auc_matches_sklearn_with_ties(task: str) -> None:
    rng = np.random.default_rng(9)
    probs = np.round(_random_probs(rng, 300, 2 if task == "binary" else 4), 1)  # many tied scores
    y = (rng.random((300, 4)) < 0.3).astype(int) if task == "multilabel" else rng.integers(0, probs.shape[1], 300)
    assert auc_score(y, probs, task=task) == pytest.approx(_sklearn_auc(y, probs, task), abs=1e-12)


def test_multiclass_auc_is_mean_one_vs_rest() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    probs = _random_probs(rng, 400, 4)
    m = classification_metrics(y, probs, task="multiclass", ci=False)
    per_class = [roc_auc_score(y == k, probs[:, k]) for k in range(4)]
    assert m["auc"] == pytest.approx(np.mean(per_class))
    assert m["auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["acc"] == pytest.approx(accuracy_score(y, probs.argmax(axis=1)))
    assert m["f1_macro"] == pytest.approx(f1_score(y, probs.argmax(axis=1), average="macro"))
    assert [m["per_class"][str(k)]["auc"] for k in range(4)] == pytest.approx(per_class)
    assert np.array(m["confusion_matrix"]).sum() == 400


def test_multiclass_skips_absent_class() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100)  # class 2 never occurs: its one-vs-rest AUC is undefined
    probs = _random_probs(rng, 100, 3)
    expected = np.mean([roc_auc_score(y == k, probs[:, k]) for k in range(2)])
    assert auc_score(y, probs, task="multiclass") == pytest.approx(expected)
    m = classification_metrics(y, probs, task="multiclass", ci=False, class_names=["a", "b", "c"])
    assert np.isnan(m["per_class"]["c"]["auc"])
    assert np.isnan(m["per_class"]["c"]["sensitivity"])
    # Binary with one class present: no AUC at all.
    assert np.isnan(auc_score(np.zeros(5, int), np.full((5, 2), 0.5), task="binary"))


def test_multilabel_hand_example() -> None:
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    probs = np.array([[0.9, 0.2], [0.6, 0.4], [0.3, 0.8], [0.1, 0.45]])
    m = classification_metrics(y, probs, task="multilabel", ci=False)
    # Predictions at > 0.5: label 0 [1, 1, 0, 0] vs [1, 0, 1, 0] -> 2/4; label 1 [0, 0, 1, 0] vs
    # [0, 0, 1, 1] -> 3/4. ACC is their mean.
    assert m["acc"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    # AUC label 0: positives 0.9 (beats 2), 0.3 (beats 0.1) -> 3/4; label 1: 4/4.
    assert m["auc"] == pytest.approx((3 / 4 + 1.0) / 2)
    assert m["confusion_matrix"] == [[[1, 1], [1, 1]], [[2, 0], [1, 1]]]
    # Label 1: sensitivity 1/2, specificity 2/2; label 0: 1/2 and 1/2.
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(0.75)
    assert m["f1_macro"] == pytest.approx(f1_score(y, probs > 0.5, average="macro"))


def test_ordinal_mae_and_kappa() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice([0, 2, 4], size=300)  # grades 1 and 3 absent: kappa must still weigh by index
    probs = _random_probs(rng, 300, 5)
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, probs, task="ordinal", ci=False)
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - y)))
    assert m["qwk"] == pytest.approx(cohen_kappa_score(y, pred, labels=range(5), weights="quadratic"))
    assert m["auc"] == pytest.approx(np.mean([roc_auc_score(y == k, probs[:, k]) for k in (0, 2, 4)]))


def test_ece_calibrated_is_near_zero() -> None:
    rng = np.random.default_rng(4)
    probs = _random_probs(rng, 50_000, 3)
    y = (rng.random(50_000)[:, None] > probs.cumsum(axis=1)).sum(axis=1)  # y drawn from probs
    assert expected_calibration_error(y, probs, task="multiclass") < 0.02
    p = rng.random((50_000, 2))
    labels = (rng.random((50_000, 2)) < p).astype(int)
    assert expected_calibration_error(labels, p, task="multilabel") < 0.02


def test_ece_overconfident() -> None:
    y = np.arange(1000) % 2
    probs = np.tile([0.01, 0.99], (1000, 1))  # always 0.99 sure of class 1, right half the time
    assert expected_calibration_error(y, probs, task="binary") == pytest.approx(0.49)


def test_ece_hand_two_bins() -> None:
    probs = np.array([[0.4, 0.3, 0.3], [0.2, 0.35, 0.45], [0.3, 0.7, 0.0], [0.8, 0.2, 0.0], [0.6, 0.4, 0.0]])
    y = np.array([0, 0, 1, 1, 0])
    # Bin [0, 0.5): confidences 0.4 (right), 0.45 (wrong): |1 - 0.85| = 0.15.
    # Bin [0.5, 1]: 0.7 (right), 0.8 (wrong), 0.6 (right): |2 - 2.1| = 0.1. ECE = 0.25 / 5.
    assert expected_calibration_error(y, probs, task="multiclass", n_bins=2) == pytest.approx(0.05)
    bins = reliability_bins(y, probs, task="multiclass", n_bins=2)
    assert bins["count"] == [2, 3]
    assert bins["confidence"] == pytest.approx([0.425, 0.7])
    assert bins["accuracy"] == pytest.approx([0.5, 2 / 3])
    assert bins["edges"] == [0.0, 0.5, 1.0]


def test_bootstrap_contains_estimate_narrows_and_is_deterministic() -> None:
    rng = np.random.default_rng(5)

    def data(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        p1 = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
        return y, np.stack([1 - p1, p1], axis=1)

    small, large = data(100), data(2000)
    widths = []
    for y, probs in (small, large):
        m = classification_metrics(y, probs, task="binary", n_boot=500)
        for key in ("auc", "acc"):
            lo, hi = m[f"{key}_ci"]
            assert lo <= m[key] <= hi
        widths.append(m["auc_ci"][1] - m["auc_ci"][0])
    assert widths[1] < widths[0] / 2
    first = bootstrap_ci(lambda yy, pp: accuracy(yy, pp, task="binary"), *small, n_boot=200, seed=3)
    again = bootstrap_ci(lambda yy, pp: accuracy(yy, pp, task="binary"), *small, n_boot=200, seed=3)
    other = bootstrap_ci(lambda yy, pp: accuracy(yy, pp, task="binary"), *small, n_boot=200, seed=4)
    assert first == again
    assert first != other


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_vectorised_bootstrap_matches_loop(task: str, ties: bool) -> None:
    rng = np.random.default_rng(6)
    n = 40  # small, so some resamples lack a class: both paths must drop or skip them alike
    probs = _random_probs(rng, n, 3 if task != "binary" else 2)
    if ties:  # tied scores take a separate path in weighted_auc
        probs = np.round(probs, 1)
    if task == "multilabel":
        y = (rng.random((n, 3)) < 0.15).astype(int)
        positives = y
    else:
        y = rng.integers(0, probs.shape[1], n)
        positives = (y[:, None] == np.arange(probs.shape[1])).astype(int)
    cols = slice(1, 2) if task == "binary" else slice(None)
    # The loop scores each resample with scikit-learn: an independent check of the rank kernel.
    loop = bootstrap_ci(lambda yy, pp: _sklearn_auc(yy, pp, task), y, probs, n_boot=100, seed=7)
    correct = (predictions(probs, task) == y).reshape(n, -1).mean(axis=1)
    stats = {"auc": weighted_auc(positives[:, cols], probs[:, cols]), "acc": weighted_accuracy(correct)}
    fast = bootstrap_ci_weighted(stats, n, n_boot=100, seed=7)
    assert fast["auc"] == pytest.approx(loop)
    loop = bootstrap_ci(lambda yy, pp: accuracy(yy, pp, task=task), y, probs, n_boot=100, seed=7)
    assert fast["acc"] == pytest.approx(loop)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_bootstrap_drops_resamples_where_metric_is_undefined() -> None:
    y = np.array([0] * 9 + [1])
    probs = np.stack([1 - np.linspace(0, 1, 10), np.linspace(0, 1, 10)], axis=1)
    lo, hi = bootstrap_ci(lambda yy, pp: roc_auc_score(yy, pp[:, 1]), y, probs, n_boot=200)
    assert lo == hi == 1.0  # the positive case not drawn: sklearn raises or gives nan
    with pytest.raises(ValueError, match="same number of cases"):
        bootstrap_ci(lambda yy, pp: 0.0, y, probs[:5])


def test_result_is_json_serialisable() -> None:
    rng = np.random.default_rng(8)
    for task, y in (
        ("binary", rng.integers(0, 2, 60)),
        ("multiclass", rng.integers(0, 3, 60)),
        ("ordinal", rng.integers(0, 3, 60)),
        ("multilabel", rng.integers(0, 2, (60, 3))),
    ):
        probs = rng.random((60, 2 if task == "binary" else 3))
        if task != "multilabel":
            probs /= probs.sum(axis=1, keepdims=True)
        m = classification_metrics(y, probs, task=task, n_boot=50)
        assert _python_types_only(m)
        json.dumps(m)
        extra = {"binary": {"threshold"}, "multilabel": {"threshold"}, "ordinal": {"mae", "qwk"}}
        assert m.keys() >= REQUIRED_KEYS | extra.get(task, set())
    assert "auc_ci" not in classification_metrics(y, probs, task="multilabel", ci=False)


@pytest.mark.parametrize(
    ("y", "probs", "task", "message"),
    [
        ([0, 1], [[0.5, np.nan], [0.2, 0.8]], "binary", "NaN"),
        ([0, 1, 1], [[0.5, 0.5], [0.2, 0.8]], "binary", "N=2"),
        ([0, 2], [[0.5, 0.5], [0.2, 0.8]], "binary", r"\[0, 1\].*found labels in \[0, 2\]"),
        ([0, -1], [[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], "multiclass", "class indices"),
        ([], np.zeros((0, 2)), "binary", "N=0"),
        ([0, 1], [[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], "binary", "2 columns"),
        ([[0, 2]], [[0.5, 0.5]], "multilabel", "0/1"),
        ([0, 1], [[0.5, 1.5], [0.2, 0.8]], "binary", r"\[0, 1\]"),
        ([0, 1], [[0.5, 0.5], [0.2, 0.8]], "regression", "task must be one of"),
    ],
)
def test_bad_input_raises(y, probs, task, message) -> None:
    with pytest.raises(ValueError, match=message):
        classification_metrics(np.asarray(y), np.asarray(probs, dtype=float), task=task)


def test_youden_threshold_separates_classes() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    t = youden_threshold(y, scores)
    assert 0.3 < t < 0.6
    assert np.array_equal(scores > t, y.astype(bool))


def test_threshold_for_sensitivity() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.5, 0.7, 0.3, 0.6, 0.8, 0.9])
    t = threshold_for_sensitivity(y, scores, 0.75)
    assert 0.5 < t < 0.6  # highest cut keeping 3 of 4 positives (0.6, 0.8, 0.9)
    t = threshold_for_sensitivity(y, scores, 1.0)
    assert 0.2 < t < 0.3  # 0.3 must be positive; 0.2 need not be
    with pytest.raises(ValueError, match="both classes"):
        youden_threshold(np.ones(4), scores[:4])
