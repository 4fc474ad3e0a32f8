"""The model card (model.json): what a loaded model needs to predict correctly, and how it was made."""

from __future__ import annotations

import platform
import statistics
from datetime import datetime, timezone

import medattn
from medattn.config import RunConfig


def model_card(config: RunConfig, data, *, model, best: dict, history: list[dict], device) -> dict:
    source = data.source
    rates = [row["images_per_second"] for row in history]
    return {
        "medattn_version": medattn.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": source.task,
        "class_names": source.class_names,
        "model": {
            "name": config.model.name,
            "options": config.model.options,
            "spatial_dims": data.spatial_dims,
            "in_channels": data.in_channels,
            "num_classes": data.num_outputs,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "input": {
            "layout": "channel-first (C, H, W) or (C, D, H, W)",
            "channels": data.in_channels,
            "size": data.size,
            # images are resized to `size`, not resampled to a spacing: this records what training saw
            "source_spacing_mm": data.source_spacing,
            "intensity": data.intensity.to_dict(),
        },
        "training_data": {
            "source": source.path,
            "kind": source.kind,
            "splits": {name: len(split) for name, split in source.splits.items()},
            "class_counts": {name: source.class_counts(name) for name in source.splits},
            "notes": data.notes,
        },
        "training": {
            "epochs_run": len(history),
            "best_epoch": best["epoch"] + 1,
            "select_metric": config.train.select_metric,
            "seconds": round(sum(row["seconds"] for row in history), 2),
            "images_per_second": round(statistics.median(rates), 1) if rates else None,
            "device": str(device),
            "host": platform.node(),
        },
        "metrics": {"val": best["scores"]},
    }
