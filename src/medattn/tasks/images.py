"""What whole-image tasks share (classification, regression): one output vector per image, images held in
memory at one size, the default backbone, the input specification, clinical values beside the images (the model
wrapped by models/clinical.py), and folds over pooled train and val images.

A subclass gives `open_source(path, config)` (its reader, without carving splits) and `strata(split)` (what
splits and folds stratify on, or None).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import replace
from typing import ClassVar

import numpy as np

from medattn.config import RunConfig
from medattn.engine.inputs import InputSpec
from medattn.tasks.base import Pool, Task, TaskData

# The default backbone and its options per dimension, chosen by benchmarks/medmnist.py (README table). 2D uses
# CBAM (channel + spatial attention): on BreastMNIST it beat SE on each of 3 paired seeds (test AUC .898 vs .877),
# and two blocks a stage beat one on each of 3 paired seeds (.902 vs .896). 3D starts with a stride-2 stem,
# narrower stages and SE: a 28^3 volume has 28x the voxels of a 28^2 image, and SE costs almost nothing.
DEFAULT_MODEL = "attn_resnet"
DEFAULT_OPTIONS = {
    2: {"widths": [32, 64, 128], "depths": [2, 2, 2], "stem_stride": 1, "attention": "cbam"},
    3: {"widths": [16, 32, 64], "depths": [1, 1, 1], "stem_stride": 2, "attention": "se"},
}


class ImageTask(Task):
    model_tag: ClassVar[str] = "classification"  # models that map an image to a vector

    @abstractmethod
    def open_source(self, path: str, config: RunConfig):
        """The task's reader for `path`, without carving splits (`open` carves them)."""

    def strata(self, split) -> np.ndarray | None:
        return None

    def default_model(self, spatial_dims: int) -> tuple[str, dict]:
        return DEFAULT_MODEL, dict(DEFAULT_OPTIONS[spatial_dims])

    def resolve(self, config: RunConfig, data: TaskData, train_set) -> RunConfig:
        """As every task resolves, and with clinical data the model wrapped to take it (concatenation by
        default)."""
        from medattn.data.clinical_images import clinical_options

        config = super().resolve(config, data, train_set)
        images = data.extra.get("images")  # absent where a caller resolves a config without loading the data
        clinical_options(config, images.clinical if images is not None else None, fusion="concat")
        return config

    def clinical_card(self, data: TaskData) -> dict | None:
        """The card's `clinical`: the encoding evaluate and predict rebuild, and the patients the table lacked."""
        from medattn.data.clinical_images import clinical_card

        images = data.extra["images"]
        return clinical_card(images.clinical, images.clinical_join)

    def image_notes(self, data_notes: list[str], images) -> list[str]:
        """The source's notes and the clinical join's (patients the table does not list)."""
        return list(data_notes) + (images.clinical_join["notes"] if images.clinical_join else [])

    def input_card(self, data: TaskData) -> dict:
        images = data.extra["images"]
        spec = InputSpec(
            spatial_dims=data.spatial_dims,
            channels=data.in_channels,
            intensity=images.intensity,
            size=images.size,
            source_spacing=images.source_spacing,  # images are resized to `size`, not resampled to a spacing
        )
        return spec.to_card()

    def data_card(self, data: TaskData) -> dict:
        source = data.source
        return {
            "source": source.path,
            "kind": source.kind,
            "splits": {name: len(split) for name, split in source.splits.items()},
            "notes": data.notes,
        }

    def fold_pool(self, source) -> Pool:
        from medattn.data.splits import Split

        parts = [source.splits[name] for name in ("train", "val") if name in source.splits]
        pooled = parts[0] if len(parts) == 1 else Split.join(*parts)
        groups = None if pooled.patient_ids is None else np.asarray(pooled.patient_ids)
        return Pool(len(pooled), self.strata(pooled), groups, items=pooled, unit="images")

    def fold_source(self, source, pool: Pool, train: np.ndarray, held_out: np.ndarray, note: str):
        splits = {"train": pool.items.subset(train), "val": pool.items.subset(held_out)}
        if "test" in source.splits:
            splits["test"] = source.splits["test"]
        return replace(source, splits=splits, notes=[*source.notes, note])

    def split_cases(self, source, split: str, truth):
        """ExplainCase per image of `source`'s split; `truth(i)` gives (text, class or None) of image i."""
        from pathlib import Path

        from medattn.data.readers import read_image
        from medattn.errors import DataError
        from medattn.explain.case import ExplainCase

        if split not in source.splits:
            raise DataError(f"{source.path}: no {split!r} split (found: {', '.join(source.splits)})")
        data = source.splits[split]
        for i in range(len(data)):
            if data.images is not None:
                image, meta, name = data.images[i], None, f"{split}-{i:04d}"
            else:
                image, meta = read_image(data.paths[i])
                name = f"{split}-{i:04d}-{Path(data.paths[i]).name.split('.')[0]}"
            mask = None
            if data.masks is not None and data.masks[i]:
                mask = read_image(data.masks[i])[0][0] > 0  # (*S) lesion mask
                if mask.shape != image.shape[1:]:
                    raise DataError(f"{data.masks[i]}: mask of shape {list(mask.shape)}, image {list(image.shape[1:])}")
            text, label = truth(i)
            yield ExplainCase(name, image, meta, text, mask=mask, label=label)

    def spatial_dims(self, config: RunConfig) -> int:
        split = self.open_source(config.data.path, config).splits["train"]
        if split.images is not None:
            return split.images.ndim - 2  # (N, C, *spatial)
        from medattn.data.readers import one_slice_as_2d, read_image

        return one_slice_as_2d(read_image(split.paths[0])[0]).ndim - 1  # (C, *spatial)
