"""Regression's part of `medattn report`: metrics with 95% CIs and predicted against true per target."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def report_sections(run_dir: Path, *, data: str | None, split: str) -> list:
    from medattn.explain.report.figures import data_uri, img, pyplot
    from medattn.explain.report.page import Section, table
    from medattn.tasks.regress.metrics import regression_metrics
    from medattn.tasks.regress.report import _member_predictions, _open_like_training
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    source, _ = _open_like_training(run, data)
    truth, pred = _member_predictions(run, source, split, tta=False)
    names = source.target_names
    metrics = regression_metrics(truth, pred, target_names=names)
    rows = []
    for name in names:
        for key in ("mae", "rmse", "r2", "pearson"):
            value, ci = metrics["per_target"][name][key], metrics["per_target"][name].get(f"{key}_ci")
            rows.append((name, key, f"{value:.4g}", f"{ci[0]:.4g} – {ci[1]:.4g}" if ci else ""))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.8), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        ax.scatter(truth[:, j], pred[:, j], s=8, alpha=0.6)
        low, high = float(np.min(truth[:, j])), float(np.max(truth[:, j]))
        ax.plot([low, high], [low, high], "k:", lw=0.8)
        ax.set(title=name, xlabel="true", ylabel="predicted")
    body = table(rows, ("target", "metric", "value", "95% CI")) + img(data_uri(fig), "predicted against true")
    return [Section(f"Evaluation: {split} split (n = {len(truth)})", body)]
