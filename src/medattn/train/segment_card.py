"""The model card (model.json) of a segmentation run: what `predict` needs to segment as training did."""

from __future__ import annotations

import math
import platform
import statistics
from datetime import datetime, timezone

import medattn
from medattn.config import RunConfig


def _plain(value):
    """JSON without NaN: an undefined distance (no structure predicted) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def segmentation_card(config: RunConfig, data, *, model, best: dict, history: list[dict], device) -> dict:
    source = data.source
    rates = [row["patches_per_second"] for row in history]
    return {
        "medattn_version": medattn.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": "segmentation",
        "class_names": data.class_names,
        "model": {**model.config, "parameters": sum(p.numel() for p in model.parameters())},
        "input": {
            **data.plan.to_card(),
            "channel_names": source.channel_names,
            "source_spacing_mm": data.source_spacing,  # median of the training cases, before resampling
            "inference": "sliding window, Gaussian blending, overlap 0.5; padded with each channel's minimum",
        },
        "training_data": {
            "source": source.path,
            "kind": source.kind,
            "splits": {name: len(cases) for name, cases in source.splits.items()},
            "notes": data.notes,
        },
        "training": {
            "epochs_run": len(history),
            "best_epoch": best["epoch"] + 1,
            "select_metric": "dice",
            "loss": config.train.loss,
            "seconds": round(sum(row["seconds"] for row in history), 2),
            "patches_per_second": round(statistics.median(rates), 2) if rates else None,
            "device": str(device),
            "host": platform.node(),
        },
        "metrics": {"val": _plain(best["scores"])},
    }
