"""Evaluation of classifiers: metrics, calibration and bootstrap confidence intervals.

Submodules (numpy and scikit-learn only; none imports torch):

- `medattn.tasks.classify.metrics`: `classification_metrics`, the MedMNIST-compatible AUC and ACC,
  input checks, predictions and threshold selection (`youden_threshold`, `threshold_for_sensitivity`).
- `medattn.evaluate.calibration`: `expected_calibration_error`, `reliability_bins`.
- `medattn.evaluate.bootstrap`: `bootstrap_ci` over resampled cases, with a vectorised path
  for metrics that can be written with case weights.

Nothing is imported here so that `import medattn.evaluate` stays cheap.
"""
