"""Tiny data sets in every layout the README promises, for tests/test_matrix.py.

Each set holds a bright square (2D) or cube (3D) on a darker background, stored in the requested type with
values that type would hold in practice: uint8 pictures, int16 CT-like values (air -1000, tissue 40, the object
300 HU), float32 and float64 in arbitrary units, or a set that alternates uint8 and float32 files. The label
is whether the object is present (classification), its mask (segmentation) or its side (regression).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from medattn.data.meta import ImageMeta
from medattn.data.readers import read_image, write_image

SIDE = {2: 16, 3: 12}
VALUES = {  # (background, tissue, object) in each stored type
    "uint8": (10, 60, 220),
    "int16": (-1000, 40, 300),
    "float32": (0.0, 180.5, 900.25),
    "float64": (-3.5, 1.25, 12.75),
}


def item(index: int, dims: int, dtype: str, *, present: bool, rng: np.random.Generator):
    """(image (1, *spatial) in its stored type, mask (*spatial) uint8, object side in voxels)."""
    kind = ("uint8", "float32")[index % 2] if dtype == "mixed" else dtype
    background, tissue, bright = VALUES[kind]
    size = SIDE[dims]
    image = np.full((size,) * dims, float(tissue))
    image[(slice(0, 2),) * dims] = background  # a corner of air or background
    mask = np.zeros((size,) * dims, np.uint8)
    side = int(rng.integers(3, 7))
    if present:
        start = rng.integers(1, size - side - 1, dims)
        box = tuple(slice(int(s), int(s) + side) for s in start)
        image[box], mask[box] = bright, 1
    image = image + rng.normal(0, abs(bright - tissue) * 0.05, image.shape)
    if np.issubdtype(np.dtype(kind), np.integer):
        info = np.iinfo(kind)
        image = np.clip(np.round(image), info.min, info.max)
    return image.astype(kind)[None], mask, side


def _meta(dims: int) -> ImageMeta:
    return ImageMeta(spacing=(1.0,) * dims, affine=np.eye(4))


def write_file(folder: Path, name: str, image: np.ndarray, *, layout: str, modality: str) -> Path:
    """One image file: DICOM for the dicom layout, PNG for 2D uint8, NIfTI otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "dicom":
        return write_dicom(folder / name, image[0], modality=modality)
    if image.ndim == 3 and image.dtype == np.uint8:
        path = folder / f"{name}.png"
        Image.fromarray(image[0]).save(path)
        return path
    path = folder / f"{name}.nii.gz"
    write_image(path, image, _meta(image.ndim - 1))
    return path


def write_dicom(target: Path, pixels: np.ndarray, *, modality: str, description: str = "") -> Path:
    """A 2D image as one DICOM file, a volume as a series folder (slices along the first axis); the files of a
    volume are named after `description` too, so several series can share one folder."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    series = generate_uid()
    planes = pixels[None] if pixels.ndim == 2 else pixels
    if pixels.ndim == 3:
        target.mkdir(parents=True, exist_ok=True)
    for index, plane in enumerate(planes):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality = {"ct": "CT", "mr": "MR"}.get(modality, "OT")
        ds.SeriesInstanceUID, ds.PatientID, ds.InstanceNumber = series, "P1", index + 1
        ds.SeriesDescription = description
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, float(index)], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        signed = plane.dtype.kind == "i"
        bits = 8 * plane.dtype.itemsize
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, int(signed)
        ds.PixelData = plane.astype(plane.dtype.newbyteorder("<")).tobytes()
        path = target / f"{description}{index:03d}.dcm" if pixels.ndim == 3 else target.with_suffix(".dcm")
        ds.save_as(path, enforce_file_format=True)
    return target if pixels.ndim == 3 else target.with_suffix(".dcm")


def classification_set(root: Path, layout: str, dims: int, dtype: str, modality: str, n: int = 20) -> Path:
    """class folders (negative/, positive/), a CSV path,label, a MedMNIST-layout npz, or DICOM class folders."""
    rng = np.random.default_rng(dims * 7 + len(dtype))
    items = [item(i, dims, dtype, present=i % 2 == 1, rng=rng) for i in range(n)]
    labels = [i % 2 for i in range(n)]
    if layout == "npz":
        return _npz(root / "set.npz", [image[0] for image, _, _ in items], np.asarray(labels)[:, None])
    rows = ["path,label"]
    for i, ((image, _, _), label) in enumerate(zip(items, labels, strict=True)):
        folder = root / "set" / ("negative", "positive")[label] if layout != "csv" else root / "images"
        path = write_file(folder, f"case{i:02d}", image, layout=layout, modality=modality)
        rows.append(f"{path.relative_to(root)},{('negative', 'positive')[label]}")
    if layout == "csv":
        (root / "set.csv").write_text("\n".join(rows) + "\n")
        return root / "set.csv"
    return root / "set"


def segmentation_set(root: Path, layout: str, dims: int, dtype: str, modality: str, n: int = 10) -> Path:
    """images/ + masks/ folders, a CSV image,mask, or an MSD dataset.json (its modality declared or left out)."""
    rng = np.random.default_rng(dims * 11 + len(dtype))
    images, masks = root / "set" / "images", root / "set" / "masks"
    pairs = []
    for i in range(n):
        image, mask, _ = item(i, dims, dtype, present=True, rng=rng)
        path = write_file(
            images, f"case{i:02d}", image, layout="dicom" if layout == "dicom" else "nifti", modality=modality
        )
        masks.mkdir(parents=True, exist_ok=True)
        if layout == "dicom":  # the mask on the DICOM's own grid (same array order, its affine)
            target = masks / f"case{i:02d}.nii.gz"
            write_image(target, mask[None], read_image(path)[1])
        elif path.suffix == ".png":
            target = masks / path.name
            Image.fromarray(mask).save(target)
        else:
            target = masks / path.name
            write_image(target, mask[None], _meta(dims))
        pairs.append((path, target))
    if layout == "csv":
        lines = ["image,mask", *(f"{a.relative_to(root)},{b.relative_to(root)}" for a, b in pairs)]
        (root / "set.csv").write_text("\n".join(lines) + "\n")
        return root / "set.csv"
    if layout == "msd":
        spec = {
            "labels": {"0": "background", "1": "object"},
            "training": [{"image": f"./images/{a.name}", "label": f"./masks/{b.name}"} for a, b in pairs],
        }
        if modality != "auto":
            spec["modality"] = {"0": {"ct": "CT", "mr": "MRI"}[modality]}
        (root / "set" / "dataset.json").write_text(json.dumps(spec))
    return root / "set"


def regression_set(root: Path, layout: str, dims: int, dtype: str, modality: str, n: int = 20) -> Path:
    """A CSV path,side or an npz with continuous labels; the target is the object's side in voxels."""
    rng = np.random.default_rng(dims * 13 + len(dtype))
    items = [item(i, dims, dtype, present=True, rng=rng) for i in range(n)]
    if layout == "npz":
        sides = np.asarray([side for _, _, side in items], np.float32)[:, None]
        return _npz(root / "set.npz", [image[0] for image, _, _ in items], sides)
    rows = ["path,side"]
    for i, (image, _, side) in enumerate(items):
        path = write_file(root / "images", f"case{i:02d}", image, layout=layout, modality=modality)
        rows.append(f"{path.relative_to(root)},{side}")
    (root / "set.csv").write_text("\n".join(rows) + "\n")
    return root / "set.csv"


def _npz(path: Path, images: list[np.ndarray], labels: np.ndarray) -> Path:
    """MedMNIST's layout: {split}_images (N, *spatial) and {split}_labels (N, 1), 14 / 3 / 3 images."""
    stack = np.stack(images)
    cuts = {"train": slice(0, 14), "val": slice(14, 17), "test": slice(17, 20)}
    arrays = {}
    for split, cut in cuts.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = stack[cut], labels[cut]
    np.savez(path, **arrays)
    return path
