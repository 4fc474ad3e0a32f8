"""`medattn explain --score`: faithfulness for every method beside a random map of the same shape, and, where
the data has masks, localisation; means over the images with percentile bootstrap 95% CIs (evaluate/), and each
method's paired difference from the random map on the same images (`<key>_minus_random`, with its CI)."""

from __future__ import annotations

import numpy as np

from medattn.errors import ConfigError
from medattn.explain.faithfulness import curves
from medattn.explain.localisation import localisation

RANDOM = "random"
N_BOOT = 1000


def mean_ci(values, *, seed: int = 0) -> tuple[float, list[float] | None]:
    """(mean, [low, high]) of the finite values; the CI is None for fewer than two."""
    from medattn.evaluate.bootstrap import percentile_ci, resample_chunks

    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return float("nan"), None
    if len(values) < 2:
        return float(values.mean()), None
    means = np.concatenate([values[idx].mean(axis=1) for idx in resample_chunks(len(values), N_BOOT, seed, 256)])
    return float(values.mean()), [float(v) for v in percentile_ci(means, 0.05)]


def score_cases(explainer, cases, *, removal: str, steps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    methods = [*explainer.methods, RANDOM]
    values: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    fractions, n = [], 0
    for case in cases:
        explained = explainer.explain(case.name, case.image, case.meta, mask=case.mask)
        if len(explained.views) != 1:
            raise ConfigError(f"{case.name}: --score scores one model input per image; a 2D model's slices are not")
        view = explained.views[0]
        random_map = rng.random(tuple(view.x.shape[2:])).astype(np.float32)
        maps = {**{m: h.numpy() for m, h in view.maps.items()}, RANDOM: random_map}
        n += 1
        for method, heat in maps.items():
            found = curves(
                lambda b, t=view.target: explainer.curve(b, t), view.x, heat, removal=removal, steps=steps, rng=rng
            )
            _add(values[method], {k: found[k] for k in ("deletion_auc", "insertion_auc")})
        if case.mask is not None and np.asarray(case.mask).any():
            grid_maps = {**explained.maps, RANDOM: rng.random(explained.image.shape[1:])}
            for method, heat in grid_maps.items():
                found = localisation(heat, np.asarray(case.mask) > 0)
                _add(values[method], {"energy_inside": found["energy_inside"], "max_hit_rate": found["max_hit"]})
            fractions.append(found["mask_fraction"])
    if n == 0:
        raise ConfigError("no images to score")
    summary = {}
    for method, columns in values.items():
        row = {}
        for key, column in columns.items():
            row[key], row[f"{key}_ci"] = mean_ci(column, seed=seed)
            if method != RANDOM:  # paired with the random map on the same images
                difference = np.asarray(column) - np.asarray(values[RANDOM][key])
                row[f"{key}_minus_random"], row[f"{key}_minus_random_ci"] = mean_ci(difference, seed=seed)
        summary[method] = row
    result = {"n": n, "removal": removal, "steps": steps, "n_localised": len(fractions)}
    if fractions:
        result["mask_fraction"], result["mask_fraction_ci"] = mean_ci(fractions, seed=seed)
    return {**result, "methods": summary}


def _add(store: dict[str, list[float]], row: dict[str, float]) -> None:
    for key, value in row.items():
        store.setdefault(key, []).append(value)


def print_scores(payload: dict) -> None:
    keys = ("deletion_auc", "insertion_auc", "energy_inside", "max_hit_rate")
    print(
        f"{payload['n']} images, removal {payload['removal']}, {payload['steps']} steps"
        + (f"; mask covers {payload['mask_fraction']:.3f} of the image" if "mask_fraction" in payload else "")
    )
    print(f"{'method':<22}" + "".join(f"{k:>16}" for k in keys))
    for method, row in payload["methods"].items():
        print(f"{method:<22}" + "".join(f"{row[k]:>16.3f}" if k in row else f"{'':>16}" for k in keys))
