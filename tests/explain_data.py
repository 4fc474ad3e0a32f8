"""A tiny data set where the class is decided by a bright blob, with the blob's mask: what explanations of a
model trained on it must point at (tests/test_explain*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.config import RunConfig
from medattn.engine.trainer import fit
from medattn.runs import prepare_run_dir


def blob_csv(root: Path, *, n: int = 160, size: int = 24, seed: int = 0) -> Path:
    """PNG images (noise; class `blob` adds a bright disc of radius 3-4 somewhere), masks, and a CSV
    path,label,split,mask (the mask empty for images without a blob)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(exist_ok=True)
    grid = np.mgrid[0:size, 0:size]
    rows = ["path,label,split,mask"]
    for i in range(n):
        image = rng.normal(90, 20, (size, size))
        mask = np.zeros((size, size), bool)
        label = "blob" if i % 2 else "clear"
        if label == "blob":
            centre, radius = rng.uniform(5, size - 5, 2), rng.uniform(3, 4.5)
            mask = ((grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2) <= radius**2
            image[mask] += 110
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "img" / f"{i}.png")
        mask_path = ""
        if mask.any():
            Image.fromarray((mask * 255).astype(np.uint8)).save(root / "mask" / f"{i}.png")
            mask_path = f"mask/{i}.png"
        split = "test" if i >= n - 40 else "val" if i >= n - 70 else "train"
        rows.append(f"img/{i}.png,{label},{split},{mask_path}")
    path = root / "blobs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def train_tiny(data: Path, out: Path, *, epochs: int = 6, attention: str = "cbam", **data_options) -> Path:
    config = RunConfig()
    config.data.path = str(data)
    for key, value in data_options.items():
        setattr(config.data, key, value)
    config.model.options = {"widths": [8, 16, 32], "depths": [1, 1, 1], "attention": attention}
    config.train.epochs, config.train.batch_size, config.train.threads = epochs, 16, 1
    run = prepare_run_dir(out, resume=False, force=False)
    fit(config, run)
    return run


def blob_segmentation(csv: Path, root: Path) -> Path:
    """The blob images of `blob_csv` as a segmentation folder (images/, masks/ with 0/1 labels)."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for line in csv.read_text().splitlines()[1:]:
        path, _, _, mask = line.split(",")
        image = Image.open(csv.parent / path)
        name = Path(path).name
        image.save(root / "images" / name)
        labels = np.asarray(Image.open(csv.parent / mask)) > 0 if mask else np.zeros(image.size[::-1], bool)
        Image.fromarray(labels.astype(np.uint8)).save(root / "masks" / name)
    return root


def cli_json(*args) -> dict:
    """`medattn ARGS --json` run in process; its one JSON object."""
    import json

    from typer.testing import CliRunner

    from medattn.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def explain_split(run: Path, data: Path, *options) -> dict:
    """`medattn explain RUN --data DATA --split test OPTIONS --json`."""
    return cli_json("explain", run, "--data", data, "--split", "test", *options)
