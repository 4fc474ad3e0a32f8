"""Regression metrics: MAE, RMSE, R², Pearson and Spearman correlation, per target, with bootstrap CIs.

Checked against scikit-learn and scipy in tests/test_regression.py. Every value is in the target's own units
(MAE, RMSE) or unitless (R², correlations); with several targets, the headline values are means over targets.
"""

from __future__ import annotations

import numpy as np

from medattn.evaluate.bootstrap import percentile_ci, resample_chunks

KEYS = ("mae", "rmse", "r2", "pearson", "spearman")


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """One target: y, p (N,)."""
    from scipy.stats import pearsonr, spearmanr

    error = p - y
    total = float(((y - y.mean()) ** 2).sum())
    constant = np.ptp(y) == 0 or np.ptp(p) == 0
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "r2": 1.0 - float((error**2).sum()) / total if total > 0 else float("nan"),
        "pearson": float("nan") if constant else float(pearsonr(y, p)[0]),
        "spearman": float("nan") if constant else float(spearmanr(y, p)[0]),
    }


def _intervals(y: np.ndarray, p: np.ndarray, *, n_boot: int, seed: int) -> dict[str, list[float]]:
    """95% percentile intervals of every metric over `n_boot` resamples of cases (each resample scored once)."""
    draws = [_scores(y[idx], p[idx]) for block in resample_chunks(len(y), n_boot, seed, n_boot) for idx in block]
    return {f"{key}_ci": list(percentile_ci(np.array([d[key] for d in draws]), 0.05)) for key in KEYS}


def regression_metrics(
    y_true: np.ndarray,
    pred: np.ndarray,
    *,
    target_names: list[str],
    ci: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """y_true, pred (N, T) in the targets' units. Keys: n, mae, rmse, r2, pearson, spearman (means over targets),
    per_target {name: {...}}, and with `ci` [lo, hi] 95% intervals (key_ci) of each, per target too."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2:
        raise ValueError(f"y_true and pred must both be (N, T), found {y.shape} and {p.shape}")
    per_target = {}
    for j, name in enumerate(target_names):
        row = _scores(y[:, j], p[:, j])
        if ci and len(y) >= 3:
            row.update(_intervals(y[:, j], p[:, j], n_boot=n_boot, seed=seed))
        per_target[name] = row
    result = {"n": len(y)}
    for key in KEYS:
        result[key] = float(np.mean([row[key] for row in per_target.values()]))
        if len(per_target) == 1 and f"{key}_ci" in per_target[target_names[0]]:
            result[f"{key}_ci"] = per_target[target_names[0]][f"{key}_ci"]
    result["per_target"] = per_target
    return result


def calibration_plot(y_true: np.ndarray, pred: np.ndarray, *, target_names: list[str], path, title: str) -> None:
    """Predicted against true per target, with the identity line and a least-squares fit: a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medattn.runs import write_atomically

    count = len(target_names)
    figure, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.2), squeeze=False)
    for j, (axis, name) in enumerate(zip(axes[0], target_names, strict=True)):
        y, p = y_true[:, j], pred[:, j]
        low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        axis.scatter(y, p, s=10, alpha=0.6)
        axis.plot([low, high], [low, high], "k--", lw=1, label="identity")
        if np.ptp(y) > 0:
            slope, intercept = np.polyfit(y, p, 1)
            axis.plot([low, high], [slope * low + intercept, slope * high + intercept], "r-", lw=1, label="fit")
        axis.set_xlabel(f"true {name}")
        axis.set_ylabel(f"predicted {name}")
        axis.legend(loc="upper left")
    figure.suptitle(title)
    figure.tight_layout()
    write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100), suffix=".png")
    plt.close(figure)
