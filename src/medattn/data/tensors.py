"""From a `source` split to model-ready tensors: read, intensity mode, resize, standardise.

Everything is held in memory as float32 (N, C, *spatial): classification inputs are small (MedMNIST
28-64 px, or resized with data.size), which keeps an epoch free of file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medattn.data.meta import require_finite
from medattn.data.preprocess import Intensity, choose_intensity, resize, to_unit
from medattn.data.splits import Split
from medattn.errors import DataError


@dataclass
class Prepared:
    x: object  # torch.Tensor (N, C, *spatial) float32, standardised
    y: object  # torch.Tensor (N,) int64 or (N, L) float32
    patient_ids: list[str] | None
    clinical: object = None  # torch.Tensor (N, F) float32: each image's clinical vector (data/clinical.py), or None

    @property
    def inputs(self):
        """What the model takes for these images: x, or (x, clinical) when there are clinical vectors."""
        return self.x if self.clinical is None else (self.x, self.clinical)


def _first_image(split: Split):
    if split.images is not None:
        return split.images[0], None
    from medattn.data.readers import read_image

    return read_image(split.paths[0])


def plan_intensity(source, *, modality: str, window: list[float] | None) -> tuple[Intensity, list[float] | None]:
    """The intensity recipe, chosen from the stored type of every training image (mean and std are filled in
    later), and the first image's spacing in mm (None for arrays without geometry, such as MedMNIST)."""
    from medattn.data.stored import stored_dtype

    split = source.splits["train"]
    image, meta = _first_image(split)
    dtypes = [image.dtype] if split.images is not None else sorted({str(stored_dtype(p)) for p in split.paths})
    wanted = modality if modality != "auto" else (source.modality if source.modality != "auto" else "auto")
    dicom_modality = None if meta is None else meta.modality
    intensity = choose_intensity(wanted, dtypes, window=window, dicom_modality=dicom_modality)
    return intensity, None if meta is None else [float(s) for s in meta.spacing]


def _load_files(split: Split, intensity: Intensity, size, progress) -> list:
    import torch

    from medattn.data.readers import one_slice_as_2d, read_image

    images, shapes = [], {}
    for path in progress(split.paths):
        array = one_slice_as_2d(read_image(path)[0])
        require_finite(array, path)
        unit = torch.from_numpy(np.ascontiguousarray(to_unit(array, intensity)))
        unit = resize(unit[None], size)[0] if size is not None else unit
        shapes.setdefault(tuple(unit.shape), path)
        images.append(unit)
    if len(shapes) > 1:
        (a, first), (b, second) = list(shapes.items())[:2]
        raise DataError(
            f"images differ in shape: {first} is {list(a)} but {second} is {list(b)}; "
            "set data.size (--size) to resize them to one input size"
        )
    return images


def to_unit_tensor(split: Split, intensity: Intensity, size, *, where: str, progress=iter):
    """(N, C, *spatial) float32 after the intensity mode and resize, before standardisation."""
    import torch

    if split.images is not None:
        require_finite(split.images, where)
        chunks = []
        for start in range(0, len(split.images), 4096):  # bounded peak memory for large sets
            unit = torch.from_numpy(to_unit(split.images[start : start + 4096], intensity))
            chunks.append(resize(unit, size))
        return torch.cat(chunks)
    return torch.stack(_load_files(split, intensity, size, progress))


def fit_standardisation(x, intensity: Intensity) -> Intensity:
    mean, std = float(x.mean()), float(x.std())
    return Intensity(intensity.mode, intensity.scale, intensity.window, mean, max(std, 1e-6))


def prepare(source, split_name: str, intensity: Intensity, size, *, progress=iter) -> Prepared:
    import torch

    if split_name not in source.splits:
        raise DataError(f"{source.path}: no {split_name!r} split (found: {', '.join(source.splits)})")
    split = source.splits[split_name]
    x = to_unit_tensor(split, intensity, size, where=f"{source.path} [{split_name}]", progress=progress)
    x = (x - intensity.mean) / intensity.std
    labels = torch.from_numpy(split.labels)
    return Prepared(x=x.contiguous(), y=labels, patient_ids=split.patient_ids)


def prepare_image(array: np.ndarray, intensity: Intensity, size, *, where: str):
    """One image read from disk, prepared exactly as in training: (1, C, *spatial)."""
    import torch

    require_finite(array, where)
    unit = torch.from_numpy(np.ascontiguousarray(to_unit(array, intensity)))[None]
    return (resize(unit, size) - intensity.mean) / intensity.std
