"""`medattn generate RUN`: new images of a class from a synthesis run, written in the layout its data came in, so
`medattn train --data REAL --synthetic OUT` reads them back with the classification readers.

- OUT ending in .npz: a MedMNIST-layout archive (`train_images` (N, H, W), (N, H, W, 3) or (N, D, H, W), and
  `train_labels` (N, 1), the class index of the training data);
- any other OUT: a folder of class folders, `OUT/<class name>/synthetic-000001.png` (2D).
Pixel values are returned to the data's stored units (8- or 16-bit for the `scale` intensity mode; Hounsfield
units for `ct`), so a classifier reading them applies its own intensity recipe exactly as to the real images.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from medattn.errors import ConfigError, RunDirError
from medattn.progress import track

CHUNK = 128  # images sampled together (twice that through the network under guidance)
PREFIX = "synthetic-"


def class_index(names: list[str], label: str) -> int:
    """The index of class `label`, given by name or by index."""
    if label in names:
        return names.index(label)
    if label.isdigit() and int(label) < len(names):
        return int(label)
    raise ConfigError(f"--label {label!r} is not a class of this run ({', '.join(names)})")


def share(n: int, counts: list[int]) -> list[int]:
    """`n` split over the classes in proportion to `counts`, by largest remainder (the parts sum to n)."""
    total = sum(counts)
    exact = [n * c / total for c in counts]
    parts = [int(e) for e in exact]
    for i in sorted(range(len(counts)), key=lambda i: parts[i] - exact[i])[: n - sum(parts)]:
        parts[i] += 1
    return parts


def sample_run(loaded, labels, *, seed: int, steps: int | None = None, guidance: float | None = None, quiet=False):
    """Standardised samples (N, C, *S) of class indices `labels` (N,) from a loaded synthesis run."""
    import torch

    from medattn.tasks.synthesis.diffusion import sample

    card = loaded.card
    steps = steps or card["sampling"]["steps"]
    guidance = card["sampling"]["guidance"] if guidance is None else guidance
    shape = (card["model"]["in_channels"], *loaded.size)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels, dtype=torch.long)
    chunks = range(0, len(labels), CHUNK)
    chunks = chunks if quiet else track(chunks, f"sampling {len(labels)} images ({steps} DDIM steps)")
    options = {"shape": shape, "steps": steps, "guidance": guidance, "clip": tuple(card["diffusion"]["clip"])}
    parts = [sample(loaded.model, labels[i : i + CHUNK], generator=generator, **options) for i in chunks]
    return torch.cat(parts) if parts else torch.zeros((0, *shape))


def to_stored(x, intensity) -> np.ndarray:
    """Standardised images (N, C, *S) back to the stored units of the training data (the inverse of to_unit)."""
    unit = (x.double() * intensity.std + intensity.mean).numpy()
    if intensity.mode == "scale":
        dtype = np.uint8 if round(1 / intensity.scale) <= 255 else np.uint16
        return np.round(np.clip(unit, 0, 1) / intensity.scale).astype(dtype)
    if intensity.mode == "ct":
        center, width = intensity.window
        return (np.clip(unit, 0, 1) * width + center - width / 2).astype(np.float32)
    return unit.astype(np.float32)  # mr (z-scored per image) and minmax (0-1 per image) read back as they are


def generate_images(
    run: Path,
    *,
    n: int,
    label: str | None,
    out: Path,
    seed: int,
    steps: int | None,
    guidance: float | None,
    overwrite: bool,
) -> dict:
    from medattn.engine.loaded import load_run

    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    out = Path(out)
    npz = out.suffix.lower() == ".npz"
    if out.exists() and not overwrite and (npz or any(out.iterdir())):
        raise RunDirError(f"{out} already exists; pass --force to replace the images generated there")
    loaded = load_run(run)
    names = loaded.card["class_names"]
    if label is not None:
        per_class = [0] * len(names)
        per_class[class_index(names, label)] = n
    else:
        per_class = share(n, loaded.card["training_data"]["class_counts"]["train"])
    labels = np.repeat(np.arange(len(names)), per_class)
    tick = time.perf_counter()
    images = to_stored(sample_run(loaded, labels, seed=seed, steps=steps, guidance=guidance), loaded.intensity)
    seconds = time.perf_counter() - tick
    if npz:
        write_npz(out, images, labels)
    else:
        write_folders(out, images, labels, names, mode=loaded.intensity.mode)
    return {
        "run": str(run),
        "out": str(out),
        "layout": "npz" if npz else "class folders",
        "images": int(n),
        "per_class": {name: int(count) for name, count in zip(names, per_class, strict=True)},
        "steps": steps or loaded.card["sampling"]["steps"],
        "guidance": loaded.card["sampling"]["guidance"] if guidance is None else guidance,
        "seed": seed,
        "seconds": round(seconds, 2),
        "images_per_second": round(n / max(seconds, 1e-9), 2),
    }


def write_npz(out: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """MedMNIST's layout: channels last for colour, the channel axis dropped for grayscale."""
    from medattn.runs import write_atomically

    stored = np.moveaxis(images, 1, -1) if images.shape[1] == 3 and images.ndim == 4 else images[:, 0]
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, train_images=stored, train_labels=labels[:, None].astype(np.int64))

    write_atomically(out, save, suffix=".npz")


def write_folders(out: Path, images: np.ndarray, labels: np.ndarray, names: list[str], *, mode: str) -> None:
    from medattn.data.raster import write_raster

    if images.ndim != 4:
        raise ConfigError(f"{out}: 3D samples are written as an .npz archive; pass --out NAME.npz")
    if mode == "minmax":
        images = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
    elif mode != "scale":
        raise ConfigError(f"{out}: images in {mode} units do not fit a PNG; pass --out NAME.npz to keep their values")
    for name in names:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{PREFIX}*.png"):  # an earlier, larger generation must not leave extra images
            old.unlink()
    for i, (image, index) in enumerate(zip(images, labels, strict=True)):
        write_raster(out / names[index] / f"{PREFIX}{i + 1:06d}.png", image)


def print_generated(payload: dict) -> None:
    counts = ", ".join(f"{name} {count}" for name, count in payload["per_class"].items() if count)
    print(
        f"{payload['images']} images ({counts}) written to {payload['out']} ({payload['layout']}) in "
        f"{payload['seconds']:.1f} s ({payload['steps']} DDIM steps, guidance {payload['guidance']})"
    )
