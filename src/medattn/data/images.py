"""Whole-image tasks (classification, regression): train and validation images as standardised tensors.

The task opens its source and carves the splits; this reads the images of train and val once, applies the
intensity recipe (chosen from the first training image) and `data.size`, and standardises with the training
images' mean and standard deviation. With `data.clinical`, each image's clinical vector is joined beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from medattn.config import RunConfig
from medattn.data.preprocess import Intensity
from medattn.data.tensors import Prepared, fit_standardisation, plan_intensity, prepare, to_unit_tensor
from medattn.errors import DataError
from medattn.progress import track


@dataclass
class ImageData:
    intensity: Intensity
    train: Prepared
    val: Prepared
    size: list[int]
    source_spacing: list[float] | None = None  # mm, of the first training image, before resizing
    clinical: object = None  # data/clinical.py's ClinicalSpec with data.clinical: train.clinical and val.clinical set
    clinical_join: dict | None = None  # patients the table lacks, per split, and the notes saying so

    @property
    def spatial_dims(self) -> int:
        return self.train.x.ndim - 2

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])


def load_images(config: RunConfig, source) -> ImageData:
    """Tensors of `source`'s train and val splits (labels as stored), prepared as config.data says."""
    import torch

    data = config.data
    if "val" not in source.splits:
        raise DataError(f"{source.path}: no validation split and data.val_fraction is 0: the best epoch needs one")
    intensity, spacing = plan_intensity(source, modality=data.modality, window=data.window)
    loading = lambda items: track(items, "reading train images")  # noqa: E731
    split = source.splits["train"]
    unit = to_unit_tensor(split, intensity, data.size, where=f"{source.path} [train]", progress=loading)
    intensity = fit_standardisation(unit, intensity)
    train = Prepared(
        x=((unit - intensity.mean) / intensity.std).contiguous(),
        y=torch.from_numpy(split.labels),
        patient_ids=split.patient_ids,
    )
    del unit
    val = prepare(
        source, "val", intensity, list(train.x.shape[2:]), progress=lambda items: track(items, "reading val images")
    )
    images = ImageData(intensity, train, val, list(train.x.shape[2:]), spacing)
    if data.clinical:  # each image's patient's clinical vector beside it (data/clinical_images.py)
        from medattn.data.clinical_images import fit_images

        images.clinical, images.clinical_join = fit_images(config, source.path, train, val)
    return images
