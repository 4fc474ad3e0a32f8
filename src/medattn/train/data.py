"""Everything the loop needs from the data: tensors for train and validation, the intensity recipe."""

from __future__ import annotations

from dataclasses import dataclass

from medattn.config import RunConfig
from medattn.data.preprocess import Intensity
from medattn.data.sources import LabelledSource, ensure_splits, open_source
from medattn.data.tensors import Prepared, fit_standardisation, plan_intensity, prepare, to_unit_tensor
from medattn.errors import DataError
from medattn.progress import track


@dataclass
class TrainingData:
    source: LabelledSource
    intensity: Intensity
    train: Prepared
    val: Prepared
    size: list[int]
    notes: list[str]
    source_spacing: list[float] | None = None  # mm, of the first training image, before resizing

    @property
    def spatial_dims(self) -> int:
        return self.train.x.ndim - 2

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def num_outputs(self) -> int:
        return len(self.source.class_names)


def load_training_data(config: RunConfig, *, source: LabelledSource | None = None) -> TrainingData:
    """Open config.data.path and carve missing splits; or take `source` as already split (cross-validation)."""
    data = config.data
    if source is None:
        source = open_source(data.path, task=data.task, class_names=data.class_names)
        notes = ensure_splits(
            source, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=config.train.seed
        )
    else:
        notes = list(source.notes)
    if "val" not in source.splits:
        raise DataError(f"{data.path}: no validation split and data.val_fraction is 0: the best epoch needs one")
    intensity, spacing = plan_intensity(source, modality=data.modality, window=data.window)
    loading = lambda items: track(items, "reading train images")  # noqa: E731
    unit = to_unit_tensor(source.splits["train"], intensity, data.size, where=f"{data.path} [train]", progress=loading)
    intensity = fit_standardisation(unit, intensity)
    train = Prepared(
        x=((unit - intensity.mean) / intensity.std).contiguous(),
        y=_labels(source, "train"),
        patient_ids=source.splits["train"].patient_ids,
    )
    del unit
    val = prepare(
        source,
        "val",
        intensity,
        list(train.x.shape[2:]),
        progress=lambda items: track(items, "reading validation images"),
    )
    for split in ("train", "val"):
        _check_labels(source, split)
    return TrainingData(source, intensity, train, val, list(train.x.shape[2:]), notes, spacing)


def _labels(source: LabelledSource, split: str):
    import torch

    return torch.from_numpy(source.splits[split].labels)


def _check_labels(source: LabelledSource, split: str) -> None:
    labels = source.splits[split].labels
    if labels.ndim == 1 and labels.size and labels.max() >= len(source.class_names):
        raise DataError(
            f"{source.path} [{split}]: label {int(labels.max())} is outside the {len(source.class_names)} classes"
        )
    if split == "train" and labels.ndim == 1 and len(set(labels.tolist())) < 2:
        raise DataError(f"{source.path} [train]: every image has the same label: nothing to learn")
