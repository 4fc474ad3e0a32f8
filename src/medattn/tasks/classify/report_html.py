"""Classification's part of `medattn report`: metrics with 95% CIs, ROC and PR curves, the confusion matrix and
a calibration plot, for a split of the run's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

METRICS = ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1_macro", "ece")


def report_sections(run_dir: Path, *, data: str | None, split: str) -> list:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    from medattn.explain.report.figures import data_uri, img, pyplot
    from medattn.explain.report.page import Section, table
    from medattn.tasks.classify.metrics import classification_metrics
    from medattn.tasks.classify.report import open_like_training, split_probabilities
    from medattn.tune.ensemble import load_ensemble

    run = load_ensemble(run_dir)
    source, path = open_like_training(run, data)
    truth, probs, _ = split_probabilities(run, source, split, where=f"{path} [{split}]")
    names = run.class_names
    metrics = classification_metrics(truth, probs, task=run.labels, threshold=run.threshold, class_names=names)
    rows = []
    for key in METRICS:
        if key in metrics:
            ci = metrics.get(f"{key}_ci")
            rows.append((key, f"{metrics[key]:.4f}", f"{ci[0]:.4f} – {ci[1]:.4f}" if ci else ""))
    sections = [Section(f"Evaluation: {split} split (n = {len(truth)})", table(rows, ("metric", "value", "95% CI")))]

    onehot = truth if truth.ndim == 2 else np.eye(len(names))[truth]
    shown = [1] if run.labels == "binary" else range(len(names))
    plt = pyplot()
    fig, (roc_ax, pr_ax, cal_ax) = plt.subplots(1, 3, figsize=(12, 3.8))
    for k in shown:
        if onehot[:, k].min() == onehot[:, k].max():
            continue  # one class only in this split: no curve
        fpr, tpr, _ = roc_curve(onehot[:, k], probs[:, k])
        roc_ax.plot(fpr, tpr, label=f"{names[k]} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(onehot[:, k], probs[:, k])
        pr_ax.plot(recall, precision, label=names[k])
        edges = np.linspace(0, 1, 11)
        bins = np.clip(np.digitize(probs[:, k], edges) - 1, 0, 9)
        filled = [b for b in range(10) if (bins == b).any()]
        cal_ax.plot(
            [probs[bins == b, k].mean() for b in filled],
            [onehot[bins == b, k].mean() for b in filled],
            "o-",
            label=names[k],
        )
    roc_ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    cal_ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    for ax, title, xlabel, ylabel in (
        (roc_ax, "ROC", "false positive rate", "true positive rate"),
        (pr_ax, "precision-recall", "recall", "precision"),
        (cal_ax, "calibration (10 bins)", "predicted probability", "observed frequency"),
    ):
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=7)
    curves = img(data_uri(fig), "ROC, precision-recall and calibration")
    body = curves
    matrix = metrics.get("confusion_matrix")
    if matrix is not None and run.labels != "multilabel":
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        ax.imshow(np.asarray(matrix), cmap="Blues")
        for (i, j), value in np.ndenumerate(np.asarray(matrix)):
            ax.text(j, i, str(value), ha="center", va="center")
        ax.set(
            xticks=range(len(names)),
            yticks=range(len(names)),
            xlabel="predicted",
            ylabel="true",
            title="confusion matrix",
        )
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.set_yticklabels(names, fontsize=7)
        body += img(data_uri(fig), "confusion matrix")
    sections.append(Section("ROC, precision-recall, calibration and confusion matrix", body))
    return sections
