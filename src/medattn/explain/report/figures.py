"""Matplotlib figures as embedded images, and the plots every task's report shares."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def data_uri(fig) -> str:
    """The figure as a data: URI (PNG), closed after."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{alt}">'


def training_curves(history: Path) -> str | None:
    """Losses (train and validation) and the other validation scores per epoch, from history.csv."""
    if not history.is_file():
        return None
    rows = list(csv.DictReader(history.open()))
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("train_loss", "val_loss"):
        if key in rows[0]:
            left.plot(epochs, [float(r[key]) for r in rows], label=key)
    left.set_xlabel("epoch")
    left.set_title("loss")
    left.legend()
    scores = [k for k in rows[0] if k.startswith("val_") and k != "val_loss"]
    for key in scores:
        right.plot(epochs, [float(r[key]) if r[key] else float("nan") for r in rows], label=key)
    right.set_xlabel("epoch")
    right.set_title("validation scores")
    if scores:
        right.legend()
    return img(data_uri(fig), "training curves")
