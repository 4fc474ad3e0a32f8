"""How good and how private generated images are: Frechet distance in a classifier's feature space, and distances
to the nearest training image.

- FID (Heusel et al. 2017) compares the mean and covariance of two sets' features. Inception features know nothing
  of ultrasound, so the features are those of a classifier trained on the real data (`--features RUN`): the
  pooled map before its head, the space in which a classifier fed the samples would see them. MONAI's FIDMetric
  does the arithmetic on them.
- Nearest-neighbour distances, per pixel (root mean square in the standardised units): a generator that copies its
  training images leaks them. Every sample's distance to its closest training image is set beside the same
  distance for real held-out images, which are new to the training set by construction; a sample closer to a
  training image than any held-out image comes is counted as a likely copy.
"""

from __future__ import annotations

import numpy as np

NEAREST_SHOWN = 8  # closest pairs listed and drawn


def unit_images(x, intensity):
    """Standardised images (N, C, *S) of a run back to its 0-1 intensity scale (before standardisation)."""
    return x * intensity.std + intensity.mean


def classifier_features(loaded, unit, *, batch: int = 256) -> np.ndarray:
    """(N, F) pooled features of a classification run for images (N, C, *S) on the 0-1 intensity scale, read as the
    classifier reads its own inputs (its standardisation and input size)."""
    import torch

    from medattn.data.preprocess import resize
    from medattn.errors import ConfigError

    model, intensity = loaded.model, loaded.intensity
    if unit.shape[1] != model.in_channels:
        raise ConfigError(
            f"{loaded.path}: the classifier reads {model.in_channels} channel(s), the images have {unit.shape[1]}"
        )
    parts = []
    with torch.inference_mode():
        for start in range(0, len(unit), batch):
            x = (resize(unit[start : start + batch].float(), loaded.size) - intensity.mean) / intensity.std
            features = model.forward_features(x)
            if features.ndim == model.spatial_dims + 2:  # a map (B, F, *grid): average over the grid
                features = features.flatten(2).mean(dim=2)
            elif features.ndim == 3:  # tokens (B, N, F)
                features = features.mean(dim=1)
            parts.append(features.double())
    return torch.cat(parts).numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The Frechet distance between two feature sets (N, F) and (M, F), by MONAI's FIDMetric."""
    import torch
    from monai.metrics import FIDMetric

    return float(FIDMetric()(torch.from_numpy(a), torch.from_numpy(b)))


def nearest(queries, references) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query's nearest reference, root mean square per pixel; images (N, C, *S)."""
    import torch

    q, r = queries.flatten(1).double(), references.flatten(1).double()
    distances = torch.cdist(q, r) / q.shape[1] ** 0.5  # (N, M)
    best, index = distances.min(dim=1)
    return best.numpy(), index.numpy()


def nearest_summary(samples, train, held_out) -> dict:
    """Each sample's and each held-out image's distance to its nearest training image, and the closest pairs."""
    sample_d, sample_i = nearest(samples, train)
    held_d, _ = nearest(held_out, train)
    order = np.argsort(sample_d)[:NEAREST_SHOWN]
    return {
        "metric": "root mean square difference per pixel, in the run's standardised intensity units",
        "samples": _quantiles(sample_d),
        "held_out": _quantiles(held_d),
        "closer_than_any_held_out": int((sample_d < held_d.min()).sum()),
        "closest_pairs": [
            {"sample": int(i), "train": int(sample_i[i]), "distance": round(float(sample_d[i]), 4)} for i in order
        ],
    }


def _quantiles(values: np.ndarray) -> dict:
    return {
        "n": len(values),
        "min": round(float(values.min()), 4),
        "p05": round(float(np.percentile(values, 5)), 4),
        "median": round(float(np.median(values)), 4),
    }


def draw_pairs(path, samples, train, pairs: list[dict]) -> None:
    """A PNG: the closest samples (top row) over their nearest training images (bottom row); 3D: middle slice."""
    from medattn.explain.report.figures import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, len(pairs), figsize=(1.6 * len(pairs), 3.6), squeeze=False)
    for column, pair in enumerate(pairs):
        for row, (image, title) in enumerate(
            ((samples[pair["sample"]], f"sample {pair['sample']}"), (train[pair["train"]], f"train {pair['train']}"))
        ):
            picture = image.numpy()
            while picture.ndim > 3:  # (C, D, H, W): the middle slice
                picture = picture[:, picture.shape[1] // 2]
            axis = axes[row][column]
            axis.imshow(picture[0] if picture.shape[0] == 1 else picture.transpose(1, 2, 0).clip(0, 1), cmap="gray")
            axis.set_title(f"{title}\nd={pair['distance']:.3f}" if row == 0 else title, fontsize=7)
            axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
