"""Bags in memory: every instance of a split read once, prepared as whole-image tasks prepare images (the
intensity recipe from the training images, `data.size`, the training set's mean and standard deviation), and
the bag boundaries beside them."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from medattn.data.images import ImageData
from medattn.data.preprocess import Intensity
from medattn.data.tensors import fit_standardisation, plan_intensity, to_unit_tensor
from medattn.errors import DataError
from medattn.progress import track


@dataclass
class BagTensors:
    x: object  # torch.Tensor (M, C, *S): every instance of the split, standardised
    offsets: list[int]  # bag b is x[offsets[b]:offsets[b + 1]]
    y: object  # torch.Tensor (B,) int64 bag labels
    names: list[str]  # the bag column's values
    files: list[list[str]]  # each bag's instance files
    patients: list[str]  # each bag's patient (the clinical table's key)
    clinical: object = None  # torch.Tensor (B, F) float32, or None without clinical data

    def join_clinical(self, spec, table: dict) -> None:
        """Each bag's clinical vector from `table` (data/clinical.py), as `spec` encodes it."""
        import torch

        self.clinical = torch.from_numpy(spec.vectors(table, self.patients)).float()

    def __len__(self) -> int:
        return len(self.names)

    def bag(self, index: int):
        return self.x[self.offsets[index] : self.offsets[index + 1]]  # (N_b, C, *S)

    def sizes(self) -> list[int]:
        return [b - a for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]


def plan(source, *, modality: str, window) -> tuple[Intensity, list[float] | None]:
    """The intensity recipe from the training bags' images (as data/tensors.py plans it for images)."""
    flat = SimpleNamespace(splits={"train": source.instances("train")}, modality=source.modality)
    return plan_intensity(flat, modality=modality, window=window)


def bag_tensors(source, split: str, intensity: Intensity, size, *, standardised: bool = True) -> BagTensors:
    """The split's bags read and prepared; `standardised=False` leaves them in unit range (to fit the mean and
    standard deviation on)."""
    import torch

    if split not in source.splits:
        raise DataError(f"{source.path}: no {split!r} split (found: {', '.join(source.splits)})")
    bags = source.splits[split]
    reading = lambda items: track(items, f"reading {split} images")  # noqa: E731
    x = to_unit_tensor(source.instances(split), intensity, size, where=f"{source.path} [{split}]", progress=reading)
    if standardised:
        x = (x - intensity.mean) / intensity.std
    offsets = [0]
    for bag in bags:
        offsets.append(offsets[-1] + len(bag.paths))
    labels = torch.tensor([bag.label for bag in bags], dtype=torch.int64)
    names, files, patients = [b.name for b in bags], [list(b.paths) for b in bags], [b.patient for b in bags]
    return BagTensors(x.contiguous(), offsets, labels, names, files, patients)


def load_bags(config, source) -> tuple[ImageData, object]:
    """(train and val bags as ImageData whose splits are BagTensors, the clinical encoding or None)."""
    if "val" not in source.splits:
        raise DataError(f"{source.path}: no validation split and data.val_fraction is 0: the best epoch needs one")
    intensity, spacing = plan(source, modality=config.data.modality, window=config.data.window)
    train = bag_tensors(source, "train", intensity, config.data.size, standardised=False)
    intensity = fit_standardisation(train.x, intensity)
    train.x = ((train.x - intensity.mean) / intensity.std).contiguous()
    val = bag_tensors(source, "val", intensity, list(train.x.shape[2:]))
    spec = None
    if config.data.clinical:
        from medattn.data.clinical import fit_clinical

        spec, table = fit_clinical(config.data.clinical, config.data.clinical_columns, train.patients)
        train.join_clinical(spec, table)
        val.join_clinical(spec, table)
    return ImageData(intensity, train, val, list(train.x.shape[2:]), spacing), spec


def padded(bags: list, *, fill: float = float("nan")):
    """(B, N, C, *S) from B bags (N_b, C, *S), shorter bags padded with NaN instances (models/mil.py masks them)."""
    import torch

    longest = max(len(bag) for bag in bags)
    out = torch.full((len(bags), longest, *bags[0].shape[1:]), fill, dtype=bags[0].dtype)
    for i, bag in enumerate(bags):
        out[i, : len(bag)] = bag
    return out
