"""Segmentation data: sources on real files, mask/image checks with the files named, patches, paired augmentation."""

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medattn.config import RunConfig
from medattn.data.patches import PatchSampler, crop
from medattn.data.preprocess import Intensity
from medattn.data.resample import resample_mask
from medattn.errors import ConfigError, DataError
from medattn.tasks.segment.augment import PairedAugment
from medattn.tasks.segment.cases import read_case
from medattn.tasks.segment.data import load_segmentation_data
from medattn.tasks.segment.inference import SegmentationPlan
from medattn.tasks.segment.sources import ensure_case_splits, is_segmentation_data, open_segmentation


def _nifti(path: Path, array: np.ndarray, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def _pairs(root: Path, n: int = 4, shape=(12, 10, 8)) -> Path:
    """images/ and masks/ of n small NIfTI volumes, a cube of label 1 in each."""
    for i in range(n):
        mask = np.zeros(shape, np.uint8)
        mask[2:6, 3:7, 2:5] = 1
        _nifti(root / "images" / f"c{i}.nii.gz", np.random.default_rng(i).random(shape).astype(np.float32))
        _nifti(root / "masks" / f"c{i}.nii.gz", mask)
    return root


def test_msd_hippocampus_opens_with_declared_classes(shared_data):
    source = open_segmentation(shared_data / "msd_hippocampus")
    assert source.kind == "msd"
    assert source.modality == "mr"
    assert source.class_names == ["background", "Anterior", "Posterior"]
    assert len(source.splits["train"]) == 260
    cases = {c.name: c for c in source.splits["train"]}
    for name in ("hippocampus_001", "hippocampus_003"):  # 003 stores its labels as float32
        item = read_case(cases[name])
        assert item.image.shape[0] == 1
        assert item.image.shape[1:] == item.mask.shape
        assert item.mask.dtype == np.int64
        assert set(np.unique(item.mask)) == {0, 1, 2}
        assert item.meta.spacing == pytest.approx((1.0, 1.0, 1.0))


def test_layouts_are_recognised(shared_data, tmp_path):
    assert is_segmentation_data(shared_data / "msd_hippocampus")
    assert is_segmentation_data(shared_data / "lgg_mri")
    assert is_segmentation_data(shared_data / "isbi2012_em")  # train/image + train/label
    assert not is_segmentation_data(shared_data / "medmnist" / "breastmnist.npz")
    (tmp_path / "cls" / "a").mkdir(parents=True)
    assert not is_segmentation_data(tmp_path / "cls")


def test_lgg_splits_keep_patients_apart(shared_data):
    source = open_segmentation(shared_data / "lgg_mri")
    assert all(c.patient_id for c in source.splits["train"])
    notes = ensure_case_splits(source, val_fraction=0.15, test_fraction=0.15, seed=3)
    assert len(notes) == 2
    patients = {name: {c.patient_id for c in cases} for name, cases in source.splits.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert sum(len(c) for c in source.splits.values()) == 2277
    again = open_segmentation(shared_data / "lgg_mri")
    ensure_case_splits(again, val_fraction=0.15, test_fraction=0.15, seed=3)
    assert [c.name for c in again.splits["test"]] == [c.name for c in source.splits["test"]]


def test_isbi_masks_of_0_and_255_read_as_binary(shared_data):
    config = RunConfig()
    config.data.path = str(shared_data / "isbi2012_em")
    config.data.patch = [64, 64]
    data = load_segmentation_data(config)
    assert data.plan.binary_255
    assert data.class_names == ["background", "foreground"]
    assert len(data.train_x) + len(data.val_x) == 30 - math.ceil(0.15 * 30)  # the test split, rounded up
    labels = torch.cat([y.flatten() for y in data.train_y])
    assert set(labels.unique().tolist()) == {0, 1}
    assert 0.70 < labels.float().mean() < 0.85  # SOURCE.md: about 22% of pixels are membrane (label 0)
    assert data.plan.spacing is None
    assert data.plan.patch == [64, 64]
    assert abs(float(torch.cat([x.flatten() for x in data.train_x]).mean())) < 1e-3  # standardised


def test_lgg_csv_gives_three_channels_and_patients(shared_data, tmp_path):
    root = shared_data / "lgg_mri"
    with (root / "manifest.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["mask_pixels"]) > 0][:12]
    table = tmp_path / "lgg.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask", "patient_id", "split"])
        for i, r in enumerate(rows):
            split = "val" if i in (4, 9) else "train"
            writer.writerow([root / "images" / r["file"], root / "masks" / r["file"], r["patient_id"], split])
    assert is_segmentation_data(table)
    config = RunConfig()
    config.data.path, config.data.test_fraction = str(table), 0.0
    data = load_segmentation_data(config)
    assert data.in_channels == 3
    assert data.num_classes == 2
    assert data.plan.binary_255
    assert len(data.val_x) == 2
    assert data.train_x[0].shape == (3, 128, 128)
    assert data.source.splits["train"][0].patient_id == rows[0]["patient_id"]


def test_channel_files_join_into_one_image(tmp_path):
    shape = (6, 7, 5)
    for channel in range(2):
        _nifti(tmp_path / "images" / f"brain_000{channel}.nii.gz", np.full(shape, channel + 1, np.float32))
    _nifti(tmp_path / "masks" / "brain.nii.gz", np.zeros(shape, np.uint8))
    [case] = open_segmentation(tmp_path).splits["train"]
    item = read_case(case)
    assert item.image.shape == (2, *shape)
    assert item.image[1].max() == 2.0


def test_mask_of_another_shape_is_an_error_naming_both_files(tmp_path):
    root = _pairs(tmp_path)
    _nifti(root / "masks" / "c2.nii.gz", np.zeros((12, 10, 7), np.uint8))
    case = next(c for c in open_segmentation(root).splits["train"] if c.name == "c2")
    with pytest.raises(DataError, match=r"c2\.nii\.gz.*c2\.nii\.gz.*spatial shape \[12, 10, 7\]") as error:
        read_case(case)
    assert "images" in str(error.value)
    assert "masks" in str(error.value)


def test_mask_with_another_affine_is_an_error_not_a_resample(tmp_path):
    root = _pairs(tmp_path)
    shifted = np.eye(4)
    shifted[0, 3] = 2.0  # 2 mm off
    _nifti(root / "masks" / "c1.nii.gz", np.zeros((12, 10, 8), np.uint8), affine=shifted)
    case = next(c for c in open_segmentation(root).splits["train"] if c.name == "c1")
    with pytest.raises(DataError, match=r"masks/c1\.nii\.gz: mask's affine differs"):
        read_case(case)


def test_labels_outside_declared_classes_name_the_mask(tmp_path):
    root = _pairs(tmp_path, n=6)
    bad = np.zeros((12, 10, 8), np.uint8)
    bad[1, 1, 1] = 3
    _nifti(root / "masks" / "c4.nii.gz", bad)
    spec = {
        "labels": {"0": "background", "1": "tumour"},
        "modality": {"0": "CT"},
        "training": [{"image": f"images/c{i}.nii.gz", "label": f"masks/c{i}.nii.gz"} for i in range(6)],
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    config = RunConfig()
    config.data.path = str(root)
    config.data.val_fraction, config.data.test_fraction = 0.5, 0.0
    with pytest.raises(DataError, match=r"masks/c4\.nii\.gz: label\(s\) \[3\] outside the 2 declared classes"):
        load_segmentation_data(config)


def test_empty_masks_folder_and_lonely_images_are_errors(tmp_path):
    root = _pairs(tmp_path / "a")
    for mask in (root / "masks").iterdir():
        mask.unlink()
    with pytest.raises(DataError, match=r"a/masks: no mask files"):
        open_segmentation(root)
    root = _pairs(tmp_path / "b")
    (root / "masks" / "c3.nii.gz").unlink()
    with pytest.raises(DataError, match=r"without a mask of the same name.*c3\.nii\.gz"):
        open_segmentation(root)


def test_all_empty_masks_are_an_error(tmp_path):
    root = _pairs(tmp_path, n=5)
    for i in range(5):
        _nifti(root / "masks" / f"c{i}.nii.gz", np.zeros((12, 10, 8), np.uint8))
    config = RunConfig()
    config.data.path = str(root)
    with pytest.raises(DataError, match="every training and validation mask is empty"):
        load_segmentation_data(config)


def test_2d_model_given_a_volume_names_the_file():
    plan = SegmentationPlan(
        spatial_dims=2, in_channels=1, num_classes=2, patch=[32, 32], spacing=None, intensity=Intensity()
    )
    with pytest.raises(DataError, match=r"scan\.nii\.gz: a 3D volume of shape \[20, 20, 9\], but the model is 2D"):
        plan.spec.fit(np.zeros((1, 20, 20, 9)), where="scan.nii.gz")
    assert plan.spec.fit(np.zeros((1, 20, 20, 1)), where="slice.nii.gz").shape == (1, 20, 20)
    with pytest.raises(DataError, match=r"x\.png: 2 channel\(s\), but the model takes 1"):
        plan.spec.fit(np.zeros((2, 20, 20)), where="x.png")


def test_masks_are_resampled_by_nearest_neighbour_only():
    mask = np.random.default_rng(0).integers(0, 3, (5, 6, 7)).astype(np.int64)
    out = resample_mask(mask, (2.0, 1.0, 1.0), [1.0, 1.0, 1.0]).numpy()
    assert out.shape == (10, 6, 7)
    np.testing.assert_array_equal(out[0::2], mask)  # every slice repeated, no new label values
    np.testing.assert_array_equal(out[1::2], mask)


def test_crop_pads_outside_the_image():
    image = torch.arange(20.0).view(1, 4, 5)
    patch = crop(image, (-1, 3), (3, 4), torch.tensor([-7.0]))
    expected = torch.full((1, 3, 4), -7.0)
    expected[0, 1:, :2] = image[0, :2, 3:]
    torch.testing.assert_close(patch, expected)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_patch_sampler_centres_the_asked_share_on_foreground(fraction):
    mask = torch.zeros(64, 64, dtype=torch.uint8)
    mask[40:43, 10:13] = 1  # 9 of 4096 pixels
    image = torch.randn(1, 64, 64)
    sampler = PatchSampler(
        [image],
        [mask],
        patch=[16, 16],
        num_classes=2,
        foreground_fraction=fraction,
        generator=torch.Generator().manual_seed(0),
    )
    draws = [sampler.sample(0) for _ in range(600)]
    hits = np.mean([bool(y.any()) for _, y, _ in draws])
    centred = np.mean([f for *_, f in draws])
    assert centred == pytest.approx(fraction, abs=0.06)
    assert hits >= centred  # a foreground-centred patch always holds foreground
    assert hits < fraction + 0.12  # random patches rarely hit 9 pixels
    assert all(x.shape == (1, 16, 16) and y.shape == (16, 16) for x, y, _ in draws[:5])


def test_patch_sampler_pads_a_volume_smaller_than_the_patch():
    mask = torch.zeros(6, 5, 4, dtype=torch.uint8)
    mask[2, 2, 2] = 2
    image = torch.rand(2, 6, 5, 4) + 1.0
    sampler = PatchSampler(
        [image], [mask], patch=[8, 8, 8], num_classes=3, foreground_fraction=1.0, generator=torch.Generator()
    )
    assert len(sampler) == 1
    x, y = sampler.batch(torch.tensor([0, 0]))
    assert x.shape == (2, 2, 8, 8, 8)
    assert y.shape == (2, 8, 8, 8)
    assert y.dtype == torch.int64
    assert int((y == 2).sum()) == 2  # the one labelled voxel in each patch
    assert float(x.min()) >= 1.0  # padded with the channel minimum, not zero


def test_paired_augment_keeps_mask_on_image():
    masks = torch.zeros(6, 32, 32, dtype=torch.int64)
    masks[:, 8:20, 5:14] = 1
    masks[:, 22:28, 18:30] = 2
    images = masks[:, None].float()
    augment = PairedAugment(
        [{"name": "flip", "prob": 0.5}, {"name": "affine", "prob": 1.0, "rotate_deg": 20.0, "scale": 0.1}],
        spatial_dims=2,
        seed=0,
    )
    x, y = augment(images, masks)
    assert set(y.unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(y, masks)  # it moved
    agree = (x[:, 0].round().long() == y).float().mean()
    assert agree > 0.97  # image and mask moved together (edges differ by interpolation only)


def test_paired_augment_refuses_monai_spatial_transforms():
    with pytest.raises(ConfigError, match="moves the image but not its mask"):
        PairedAugment([{"name": "monai.RandRotate90", "prob": 0.5}], spatial_dims=2, seed=0)


def test_png_folder_with_rgb_image_and_gray_mask(tmp_path):
    for i in range(3):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.full((9, 11, 3), 40 * i, np.uint8)).save(tmp_path / "images" / f"s{i}.png")
        Image.fromarray(np.eye(9, 11, dtype=np.uint8) * 255).save(tmp_path / "masks" / f"s{i}.png")
    item = read_case(open_segmentation(tmp_path).splits["train"][1], binary_255=True)
    assert item.image.shape == (3, 9, 11)
    assert set(np.unique(item.mask)) == {0, 1}
