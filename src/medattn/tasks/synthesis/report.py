"""`evaluate` for synthesis runs: samples as many images as the training split holds (capped), in its class
proportions, and scores them against the real images (fidelity.py); the printed report and the HTML section."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.errors import DataError
from medattn.runs import record_metrics

MAX_SAMPLES = 1000  # FID is biased upward on few samples; more than this costs minutes of CPU for little
SEED = 0  # the samples scored: the same on every evaluate of a run
GRID = 8  # samples per class drawn in the report


def evaluate_run(
    run_dir: str | Path,
    *,
    data: str | None,
    split: str,
    features: str | None,
    max_samples: int = MAX_SAMPLES,
    steps: int | None = None,
) -> dict:
    """Sample min(training images, max_samples) images (`steps` DDIM steps, default the card's) and score them."""
    import torch

    from medattn.data.tensors import prepare
    from medattn.engine.loaded import load_run
    from medattn.tasks.classify.report import open_like_training
    from medattn.tasks.synthesis.fidelity import draw_pairs, nearest_summary
    from medattn.tasks.synthesis.generate import sample_run, share

    run = load_run(run_dir)
    source, path = open_like_training(run, data)
    for name in ("train", split):
        if name not in source.splits:
            raise DataError(f"{path}: no {name!r} split (found: {', '.join(source.splits)})")
    train = prepare(source, "train", run.intensity, run.size)
    real = prepare(source, split, run.intensity, run.size)
    names = run.card["class_names"]
    counts = np.bincount(train.y.numpy(), minlength=len(names))
    labels = np.repeat(np.arange(len(names)), share(min(len(train.y), max_samples), counts.tolist()))
    samples = sample_run(run, labels, seed=SEED, steps=steps)  # (N, C, *S) standardised, as train and real
    nearest = nearest_summary(samples, train.x, real.x)
    picture = Path(run_dir) / f"nearest-{split}.png"
    draw_pairs(picture, samples, train.x, nearest["closest_pairs"])
    metrics = {
        "run": str(run.path),
        "data": str(path),
        "split": split,
        "task": run.task,
        "samples": len(labels),
        "sampling": {**run.card["sampling"], "steps": steps or run.card["sampling"]["steps"]},
        "nearest": {**nearest, "picture": str(picture)},
    }
    if features is None:
        metrics["fid"] = None
        metrics["notes"] = ["FID needs a classifier's feature space: pass --features CLASSIFICATION_RUN"]
    else:
        metrics["fid"] = fid_scores(features, run, samples, torch.from_numpy(labels), train, real, names)
    return record_metrics(run.path, split, metrics)


def fid_scores(features: str, run, samples, labels, train, real, names: list[str]) -> dict:
    """FID of the samples to the split's real images, overall and per class, beside two references on the same
    features: the training images (real against real: the floor a perfect generator reaches, biased by the sizes)
    and Gaussian noise with the training images' mean and spread (the ceiling of a generator that learnt nothing)."""
    import torch

    from medattn.engine.loaded import load_run
    from medattn.tasks.synthesis.fidelity import classifier_features, frechet, unit_images

    classifier = load_run(features)
    if classifier.card.get("class_names") != names:
        raise DataError(
            f"{features}: the classifier's classes {classifier.card.get('class_names')} are not the run's {names}"
        )
    to_features = lambda x: classifier_features(classifier, unit_images(x, run.intensity))  # noqa: E731
    fake, held, seen = to_features(samples), to_features(real.x), to_features(train.x)
    noise = torch.randn(samples.shape, generator=torch.Generator().manual_seed(SEED))
    per_class = {}
    for index, name in enumerate(names):
        mine, theirs = fake[labels.numpy() == index], held[real.y.numpy() == index]
        per_class[name] = frechet(mine, theirs) if min(len(mine), len(theirs)) > 1 else None
    dims, smallest = fake.shape[1], min(len(held), *(int((real.y == k).sum()) for k in range(len(names))))
    notes = []
    if smallest <= dims:  # a covariance of fewer images than features is singular: its square root is approximate
        notes.append(f"{smallest} real images in the smallest set for {dims} features: FID is biased upward, compare "
                     "it only with FIDs of sets of the same sizes")  # fmt: skip
    return {
        "features": str(classifier.path),
        "feature_dims": dims,
        "notes": notes,
        "samples_vs_real": frechet(fake, held),
        "per_class": per_class,
        "train_vs_real": frechet(seen, held),
        "noise_vs_real": frechet(to_features(noise), held),
    }


def print_report(metrics: dict) -> None:
    fid, nearest = metrics["fid"], metrics["nearest"]
    print(f"{metrics['run']} on {metrics['data']} [{metrics['split']}]: {metrics['samples']} samples")
    if fid is None:
        print(f"  FID: {' '.join(metrics.get('notes', []))}")
    else:
        classes = ", ".join(f"{k} {v:.2f}" for k, v in fid["per_class"].items() if v is not None)
        print(
            f"  FID to real {fid['samples_vs_real']:.2f} ({classes}); references: train {fid['train_vs_real']:.2f}, "
            f"noise {fid['noise_vs_real']:.2f} (features of {fid['features']})"
        )
    samples, held = nearest["samples"], nearest["held_out"]
    print(
        f"  nearest training image: samples median {samples['median']:.3f} (min {samples['min']:.3f}), "
        f"real held-out median {held['median']:.3f} (min {held['min']:.3f}); "
        f"{nearest['closer_than_any_held_out']} sample(s) closer than any held-out image"
    )
    print(f"  closest pairs drawn in {nearest['picture']}")


def report_sections(run_dir: Path) -> list:
    """A grid of samples per class, and the closest pairs of the last evaluate."""
    from medattn.engine.loaded import load_run
    from medattn.explain.report.figures import data_uri, file_uri, img, pyplot
    from medattn.explain.report.page import Section, figure
    from medattn.tasks.synthesis.generate import sample_run

    run = load_run(run_dir)
    names = run.card["class_names"]
    samples = sample_run(run, np.repeat(np.arange(len(names)), GRID), seed=SEED, quiet=True)
    plt = pyplot()
    fig, axes = plt.subplots(len(names), GRID, figsize=(1.2 * GRID, 1.3 * len(names)), squeeze=False)
    for i, image in enumerate(samples.numpy()):
        while image.ndim > 3:  # (C, D, H, W): the middle slice
            image = image[:, image.shape[1] // 2]
        axis = axes[i // GRID][i % GRID]
        axis.imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0).clip(0, 1), cmap="gray")
        axis.set_title(names[i // GRID] if i % GRID == 0 else "", fontsize=7, loc="left")
        axis.axis("off")
    body = figure(img(data_uri(fig), "samples"), f"{GRID} samples per class (seed {SEED}, DDIM)")
    for picture in sorted(Path(run_dir).glob("nearest-*.png")):
        body += figure(img(file_uri(picture), picture.stem), "closest samples over their nearest training images")
    return [Section("Samples", body)]
