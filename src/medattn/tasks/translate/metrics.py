"""Translation metrics per image (per volume in 3D), on the target's intensities as stored: PSNR and SSIM with
the data range of those intensities (the training targets' max - min unless data.target_range says otherwise:
2 for data in [-1, 1], 255 for 8-bit pictures), and MAE; each also within the foreground, the voxels where the
target is above its background level (its minimum plus FOREGROUND_LEVEL of the range).

PSNR comes from MONAI's PSNRMetric; SSIM from MONAI's SSIM map (Gaussian window 11, sigma 1.5, as in Wang et al.
2004), averaged over the image or over the foreground inside it. Images are averaged per subject (patient), then
over subjects, with a percentile bootstrap over subjects for the 95% intervals: slices of one patient are not
independent evidence.
"""

from __future__ import annotations

import math

import numpy as np

from medattn.evaluate.bootstrap import percentile_ci, resample_chunks

KEYS = ("psnr", "ssim", "mae", "psnr_foreground", "ssim_foreground")
FOREGROUND_LEVEL = 0.01
WINDOW, SIGMA = 11, 1.5


def _window(shape) -> int:
    """The SSIM window: 11, or the largest odd size that fits the smallest side."""
    side = min(shape)
    return WINDOW if side >= WINDOW else max(3, side - 1 if side % 2 == 0 else side)


def image_scores(pred: np.ndarray, truth: np.ndarray, *, data_range: float) -> dict[str, float]:
    """Scores of one prediction against its target, both (C, *S) in stored intensities."""
    import torch
    from monai.metrics import PSNRMetric
    from monai.metrics.regression import compute_ssim_and_cs

    p = torch.as_tensor(np.asarray(pred, dtype=np.float64))[None]  # (1, C, *S)
    t = torch.as_tensor(np.asarray(truth, dtype=np.float64))[None]
    dims = t.ndim - 2
    error = (p - t)[0]
    mse = float(error.square().mean())
    scores = {
        "psnr": float(PSNRMetric(max_val=data_range)(p, t).mean()) if mse > 0 else math.inf,
        "mae": float(error.abs().mean()),
    }
    size = _window(t.shape[2:])
    ssim_map, _ = compute_ssim_and_cs(
        p, t, spatial_dims=dims, kernel_size=[size] * dims, kernel_sigma=[SIGMA] * dims, data_range=data_range
    )  # (1, C, *S - size + 1): the windows that lie inside the image
    scores["ssim"] = float(ssim_map.mean())
    mean_truth = t[0].mean(dim=0)  # (*S)
    foreground = mean_truth > mean_truth.min() + FOREGROUND_LEVEL * data_range
    if not bool(foreground.any()):
        return {**scores, "psnr_foreground": math.nan, "ssim_foreground": math.nan}
    inner = foreground[tuple(slice(size // 2, s - size // 2) for s in foreground.shape)]  # the map's grid
    fg_mse = float(error.square().mean(dim=0)[foreground].mean())
    scores["psnr_foreground"] = 10 * math.log10(data_range**2 / fg_mse) if fg_mse > 0 else math.inf
    scores["ssim_foreground"] = float(ssim_map[0].mean(dim=0)[inner].mean()) if bool(inner.any()) else math.nan
    return scores


def summarise(
    rows: list[dict], subjects: list[str], *, ci: bool = True, n_boot: int = 1000, seed: int = 0
) -> dict[str, float | list]:
    """Means over subjects (each the mean of its images) of every key, with [lo, hi] 95% intervals (key_ci)."""
    names = sorted(set(subjects))
    index = {name: i for i, name in enumerate(names)}
    per_subject = np.full((len(names), len(KEYS)), np.nan)
    owner = np.array([index[who] for who in subjects])
    for s in range(len(names)):
        mine = [rows[i] for i in np.flatnonzero(owner == s)]
        for k, key in enumerate(KEYS):
            values = np.array([row[key] for row in mine], dtype=float)
            values = values[np.isfinite(values)]
            per_subject[s, k] = values.mean() if len(values) else np.nan
    result: dict[str, float | list] = {"n": len(rows), "n_subjects": len(names)}
    for k, key in enumerate(KEYS):
        column = per_subject[:, k]
        result[key] = float(np.nanmean(column)) if np.isfinite(column).any() else math.nan
    if ci and len(names) >= 3:
        draws = np.concatenate(
            [np.nanmean(per_subject[block], axis=1) for block in resample_chunks(len(names), n_boot, seed, 256)]
        )  # (n_boot, keys)
        for k, key in enumerate(KEYS):
            result[f"{key}_ci"] = list(percentile_ci(draws[:, k], 0.05))
    return result
