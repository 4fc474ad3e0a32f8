"""Synthetic images mixed into a classifier's training split (`--synthetic PATH --synthetic-ratio R`).

PATH is any classification layout (what `medattn generate` writes: a MedMNIST-layout .npz or class folders); its
images join the training split only, never validation or test, so every score stays one on real images. They are
read with the real training images' intensity recipe and standardisation and resized to their size. Classes are
matched by name for class folders and CSVs, by index for an .npz (whose labels are indices). R synthetic images per
real one are drawn (seeded) from PATH, all of them when it holds fewer (a note says so). Class counts used by
weighted losses and recorded in the card stay the real ones; the card's `training_data.synthetic` says what was
mixed in.
"""

from __future__ import annotations

import numpy as np

from medattn.config import RunConfig
from medattn.errors import DataError

DEFAULT_RATIO = 1.0  # one synthetic image per real one: doubles a scarce set without drowning the real images


def synthetic_labels(real, synthetic) -> np.ndarray:
    """The synthetic training split's labels as indices of the real classes."""
    split = synthetic.splits["train"]
    if synthetic.labels == "multilabel" or split.labels.ndim != 1:
        raise DataError(f"{synthetic.path}: synthetic images need one class each; these labels are multi-label")
    if synthetic.kind == "medmnist":  # indices, the only thing an .npz stores
        if split.labels.max() >= len(real.class_names):
            raise DataError(
                f"{synthetic.path}: label {int(split.labels.max())} is outside the real data's "
                f"{len(real.class_names)} classes"
            )
        return split.labels
    unknown = sorted(set(synthetic.class_names) - set(real.class_names))
    if unknown:
        raise DataError(
            f"{synthetic.path}: class(es) {', '.join(unknown)} are not classes of {real.path} "
            f"({', '.join(real.class_names)})"
        )
    mapping = np.asarray([real.class_names.index(name) for name in synthetic.class_names])
    return mapping[split.labels]


def mix_synthetic(config: RunConfig, real, images) -> dict | None:
    """Append the synthetic images config.data.synthetic names to `images.train` (in place); returns the card's
    summary, or None without --synthetic."""
    import torch

    from medattn.data.tensors import Prepared, to_unit_tensor
    from medattn.tasks.classify.sources import open_source

    path = config.data.synthetic
    if not path:
        return None
    ratio = config.data.synthetic_ratio if config.data.synthetic_ratio is not None else DEFAULT_RATIO
    synthetic = open_source(path)
    labels = torch.from_numpy(synthetic_labels(real, synthetic))
    split = synthetic.splits["train"]
    intensity, train = images.intensity, images.train
    n_real = len(train.y)
    take = min(round(ratio * n_real), len(labels))
    chosen = torch.randperm(len(labels), generator=torch.Generator().manual_seed(config.train.seed))[:take]
    unit = to_unit_tensor(split.subset(chosen.numpy()), intensity, images.size, where=f"{path} [synthetic]")
    if unit.shape[1:] != train.x.shape[1:]:
        raise DataError(
            f"{path}: synthetic images of shape {list(unit.shape[1:])}, the real ones {list(train.x.shape[1:])}"
        )
    x = (unit - intensity.mean) / intensity.std
    ids = None if train.patient_ids is None else [*train.patient_ids, *(f"synthetic-{int(i)}" for i in chosen)]
    images.train = Prepared(
        x=torch.cat([train.x, x]).contiguous(), y=torch.cat([train.y, labels[chosen]]), patient_ids=ids
    )
    counts = np.bincount(labels[chosen].numpy(), minlength=len(real.class_names))
    summary = {"path": str(path), "images": take, "ratio": ratio, "available": len(labels), "real": n_real}
    summary["class_counts"] = [int(c) for c in counts]
    if take < round(ratio * n_real):
        summary["note"] = f"{path} holds {len(labels)} images, fewer than ratio {ratio} x {n_real} real: all used"
    return summary
