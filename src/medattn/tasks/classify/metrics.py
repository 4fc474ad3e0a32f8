"""Classification metrics that match the MedMNIST v2 evaluator, plus the clinical ones it omits.

Tasks: "binary", "multiclass", "multilabel", "ordinal" (scored as multiclass, plus MAE of the
predicted class index and quadratic weighted kappa). `probs` is (N, K) softmax output for
binary (K=2), multiclass and ordinal; (N, L) sigmoid output for multilabel.

Definitions shared with MedMNIST's getAUC/getACC, so benchmark numbers are comparable:
- AUC: binary uses probs[:, 1]; multiclass/ordinal average the one-vs-rest AUC of probs[:, k] vs
  y == k over classes; multilabel averages the per-label AUC. One difference: a class or label
  with only one value present has no AUC and is left out of the mean (MedMNIST raises or counts
  it as 0); if none is scorable the AUC is nan.
- ACC: binary predicts positive when probs[:, 1] > threshold (strictly greater, as MedMNIST);
  multiclass takes the argmax; multilabel is the mean over labels of per-label accuracy at
  probs > threshold. threshold defaults to 0.5.

Sensitivity and specificity are of the positive class for binary and macro averages over
classes/labels otherwise (classes without positives, or negatives, are left out). f1_macro is
sklearn's f1_score(average="macro"): over classes present in labels or predictions (multilabel:
over all labels). Undefined values are nan, which json writes as NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    roc_curve,
)

from medattn.evaluate.bootstrap import bootstrap_ci_weighted, column_auc, weighted_accuracy, weighted_auc

TASKS = ("binary", "multiclass", "multilabel", "ordinal")
_PROB_TOLERANCE = 1e-6  # float32 softmax can overshoot 1 by an ulp or two


def check_inputs(y_true: np.ndarray, probs: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and probabilities; return y as int64 ((N,) or (N, L)) and probs as float64."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, found {task!r}")
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y_true)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (N, K), found shape {p.shape}")
    n, k = p.shape
    if n == 0:
        raise ValueError("expected at least one case, found N=0 (empty probs)")
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"y_true must have N={n} cases like probs {p.shape}, found shape {y.shape}")
    if not np.isfinite(p).all():
        rows = np.flatnonzero(~np.isfinite(p).all(axis=1))
        raise ValueError(f"probs must be finite, found NaN/inf in {rows.size} rows (first: row {rows[0]})")
    if p.min() < -_PROB_TOLERANCE or p.max() > 1 + _PROB_TOLERANCE:
        raise ValueError(f"probs must lie in [0, 1], found values in [{p.min():.4g}, {p.max():.4g}]")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y_true must be numeric labels, found dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        raise ValueError("y_true must hold integer labels, found non-integer or NaN values")
    if task == "multilabel":
        if y.shape != p.shape:
            raise ValueError(f"multilabel y_true must have shape {p.shape} like probs, found {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"multilabel y_true must be 0/1, found values {np.unique(y)[:10].tolist()}")
        return y.astype(np.int64), p
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{task} y_true must have shape (N,) or (N, 1) class indices, found {y.shape}")
    if task == "binary" and k != 2:
        raise ValueError(f"binary probs must have 2 columns (negative, positive), found {k}")
    if k < 2:
        raise ValueError(f"{task} probs must have at least 2 columns, found {k}")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(
            f"labels must be class indices in [0, {k - 1}] for probs with {k} columns, "
            f"found labels in [{y.min()}, {y.max()}]"
        )
    return y.astype(np.int64), p


def predictions(probs: np.ndarray, task: str, threshold: float | None = None) -> np.ndarray:
    """Predicted labels: (N,) class indices, or (N, L) 0/1 for multilabel."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, found {task!r}")
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (N, K), found shape {p.shape}")
    thr = 0.5 if threshold is None else float(threshold)
    if task == "binary":
        return (p[:, 1] > thr).astype(np.int64)
    if task == "multilabel":
        return (p > thr).astype(np.int64)
    return np.argmax(p, axis=1)


def _one_vs_rest(y: np.ndarray, p: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(positives, scores), both (N, C): one binary problem per class or label."""
    if task == "multilabel":
        return y, p
    return (y[:, None] == np.arange(p.shape[1])).astype(np.int64), p


def _column_aucs(positives: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of each column; nan where the column has only one value.

    The bootstrap's Mann-Whitney kernel with unit weights: the same number as roc_auc_score
    (tested), at a fraction of its cost, which matters when `bootstrap_ci` calls `auc_score`.
    """
    return column_auc(positives, scores)(np.ones((1, scores.shape[0]), dtype=np.int32))[0]


def _mean_defined(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def auc_score(y_true: np.ndarray, probs: np.ndarray, *, task: str) -> float:
    """AUC as defined in the module docstring."""
    y, p = check_inputs(y_true, probs, task)
    aucs = _column_aucs(*_one_vs_rest(y, p, task))
    return float(aucs[1]) if task == "binary" else _mean_defined(aucs)


def accuracy(y_true: np.ndarray, probs: np.ndarray, *, task: str, threshold: float | None = None) -> float:
    """ACC as defined in the module docstring (multilabel: mean per-label accuracy)."""
    y, p = check_inputs(y_true, probs, task)
    return float(np.mean(predictions(p, task, threshold) == y))


def _check_scores(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(y_true).ravel(), np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores must have the same length, found {y.size} and {s.size}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite, found NaN/inf")
    if not np.isin(y, (0, 1)).all() or np.unique(y).size != 2:
        found = np.unique(y).tolist()
        raise ValueError(f"y_true must be 0/1 with both classes present, found values {found}")
    return y, s


def _cut_below(thresholds: np.ndarray, i: int) -> float:
    """A cut for the rule `score > cut` that reproduces roc_curve's `score >= thresholds[i]`.

    The midpoint to the next lower distinct score lies strictly between the classes it separates,
    which works for either comparison and keeps the cut away from any one case's score.
    """
    if i == 0:  # thresholds[0] is +inf: nothing positive
        return float(thresholds[1])
    if i == len(thresholds) - 1:  # everything positive
        return float(np.nextafter(thresholds[i], -np.inf))
    return float((thresholds[i] + thresholds[i + 1]) / 2)


def youden_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (Youden's J), for `score > threshold`.

    Tune it on validation data, never on the test set. Ties go to the highest threshold.
    """
    y, s = _check_scores(y_true, scores)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    return _cut_below(thresholds, int(np.argmax(tpr - fpr)))


def threshold_for_sensitivity(y_true: np.ndarray, scores: np.ndarray, target: float) -> float:
    """Highest threshold (best specificity) whose sensitivity with `score > threshold` is >= target."""
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must lie in (0, 1], found {target}")
    y, s = _check_scores(y_true, scores)
    _, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    return _cut_below(thresholds, int(np.argmax(tpr >= target - 1e-12)))


def _class_names(class_names: Sequence[str] | None, k: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(k)]
    if len(class_names) != k:
        raise ValueError(f"class_names must name all {k} columns of probs, found {len(class_names)} names")
    return [str(c) for c in class_names]


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(num.shape, empty), where=den > 0)


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    task: str,
    threshold: float | None = None,
    class_names: Sequence[str] | None = None,
    ci: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """All metrics for one split as a JSON-serialisable dict (see the module docstring).

    Keys: task, n, auc, acc, balanced_acc, sensitivity, specificity, f1_macro, ece,
    confusion_matrix (K x K, rows true; multilabel: L x [[tn, fp], [fn, tp]]), per_class
    ({name: {auc, sensitivity, specificity, f1, support}}); threshold (binary, multilabel);
    mae and qwk (ordinal); auc_ci and acc_ci ([lo, hi], 95%, when ci).
    """
    # calibration imports check_inputs from this module, so it is imported here, not at the top.
    from medattn.evaluate.calibration import expected_calibration_error

    y, p = check_inputs(y_true, probs, task)
    n, k = p.shape
    names = _class_names(class_names, k)
    thr = 0.5 if threshold is None else float(threshold)
    pred = predictions(p, task, thr)
    positives, scores = _one_vs_rest(y, p, task)
    col_auc = _column_aucs(positives, scores)

    kappa = float("nan")
    with warnings.catch_warnings():
        # sklearn warns (UserWarning and its UndefinedMetricWarning) on classes absent from y_true
        # or y_pred; those cases are handled as documented.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"sklearn\.")
        if task == "multilabel":
            mcm = multilabel_confusion_matrix(y, pred)  # (L, 2, 2): [[tn, fp], [fn, tp]]
            tn, fp, fn, tp = mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0], mcm[:, 1, 1]
            cm = mcm.tolist()
            balanced = float(np.mean([balanced_accuracy_score(y[:, c], pred[:, c]) for c in range(k)]))
        else:
            full = confusion_matrix(y, pred, labels=np.arange(k))  # rows true, columns predicted
            tp = np.diag(full)
            fn, fp = full.sum(axis=1) - tp, full.sum(axis=0) - tp
            tn = n - tp - fn - fp
            cm = full.tolist()
            balanced = float(balanced_accuracy_score(y, pred))
        f1_macro = float(f1_score(y, pred, average="macro", zero_division=0))
        if task == "ordinal":
            # labels= keeps the quadratic weights on class-index distance even if a grade is absent.
            kappa = float(cohen_kappa_score(y, pred, labels=np.arange(k), weights="quadratic"))

    sens, spec = _ratio(tp, tp + fn, np.nan), _ratio(tn, tn + fp, np.nan)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn, 0.0)  # sklearn's zero_division=0
    binary = task == "binary"
    result: dict = {
        "task": task,
        "n": int(n),
        "auc": float(col_auc[1]) if binary else _mean_defined(col_auc),
        "acc": float(np.mean(pred == y)),
        "balanced_acc": balanced,
        # Binary: of the positive class (specificity of class 1 is the recall of class 0).
        "sensitivity": float(sens[1]) if binary else _mean_defined(sens),
        "specificity": float(spec[1]) if binary else _mean_defined(spec),
        "f1_macro": f1_macro,
        "ece": expected_calibration_error(y, p, task=task),
        "confusion_matrix": cm,
        "per_class": {
            name: {
                "auc": float(col_auc[c]),
                "sensitivity": float(sens[c]),
                "specificity": float(spec[c]),
                "f1": float(f1[c]),
                "support": int(tp[c] + fn[c]),
            }
            for c, name in enumerate(names)
        },
    }
    if task in ("binary", "multilabel"):
        result["threshold"] = thr
    if task == "ordinal":
        result["mae"] = float(np.mean(np.abs(pred - y)))
        result["qwk"] = kappa  # nan when labels and predictions share a single grade
    if ci:
        cols = slice(1, 2) if binary else slice(None)
        auc_stat = weighted_auc(positives[:, cols], scores[:, cols])
        correct = (pred == y).mean(axis=1) if task == "multilabel" else (pred == y)
        stats = {"auc_ci": auc_stat, "acc_ci": weighted_accuracy(correct)}
        for key, (lo, hi) in bootstrap_ci_weighted(stats, n, n_boot=n_boot, seed=seed).items():
            result[key] = [lo, hi]
    return result
