"""The model card (model.json): what a loaded model needs to predict correctly, and how it was made.

The engine writes what every run has (version, model, training statistics, validation metrics); the task adds
its own part (class names, the input specification of engine/inputs.py, the training data, a threshold).
"""

from __future__ import annotations

import platform
import statistics
from datetime import datetime, timezone

import medattn
from medattn.config import RunConfig


def model_card(task, config: RunConfig, data, *, model, best: dict, history: list[dict], device) -> dict:
    rate = f"{task.item}_per_second"
    rates = [row[rate] for row in history]
    card = {
        "medattn_version": medattn.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": task.name,
        "model": {**model.config, "parameters": sum(p.numel() for p in model.parameters())},
    }
    card.update(task.card(config, data, model=model, device=device))
    if card["model"]["spatial_dims"] == 2 and "input" in card:  # how this 2D model reads a volume (inputs.py)
        card["input"]["slice_axis"] = config.data.slice_axis
    card["training"] = {
        "epochs_run": len(history),
        "epochs_planned": config.train.epochs,
        "best_epoch": best["epoch"] + 1,
        "select_metric": config.train.select_metric,
        "loss": config.train.loss,
        "seconds": round(sum(row["seconds"] for row in history), 2),
        rate: round(statistics.median(rates), 1) if rates else None,
        "device": str(device),
        "host": platform.node(),
        **card.get("training", {}),
    }
    card["metrics"] = {"val": best["scores"]}
    return card
