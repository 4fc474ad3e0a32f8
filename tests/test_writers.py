"""Writers restore meta: a mask written as NIfTI overlays its image, PNG round trips, writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medattn.data.meta import ImageMeta
from medattn.data.readers import read_image, write_image
from medattn.errors import WriteError


def _oblique_meta() -> ImageMeta:
    """1.5 x 0.8 x 3 mm voxels, rotated 20 degrees about z and shifted: nothing a bug could hide behind."""
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 0.8, 3.0])
    affine[:3, 3] = [-90.0, 12.5, 40.0]
    return ImageMeta(spacing=(1.5, 0.8, 3.0), affine=affine)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32])
def test_nifti_round_trip_keeps_affine_dtype_and_values(tmp_path: Path, dtype: type):
    meta = _oblique_meta()
    array = np.random.default_rng(0).integers(0, 100, (1, 6, 7, 8)).astype(dtype)
    write_image(tmp_path / "volume.nii.gz", array, meta)
    back, back_meta = read_image(tmp_path / "volume.nii.gz")
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(back_meta.affine, meta.affine, atol=1e-5)
    assert back_meta.spacing == pytest.approx(meta.spacing)


def test_label_types_viewers_cannot_show_are_narrowed_without_loss(tmp_path: Path):
    meta = _oblique_meta()
    labels = np.random.default_rng(1).integers(0, 4, (6, 7, 8))  # int64, as argmax returns them
    write_image(tmp_path / "argmax.nii", labels, meta)  # a bare label map: no channel axis
    back, _ = read_image(tmp_path / "argmax.nii")
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back[0], labels)
    write_image(tmp_path / "bool.nii.gz", labels[None] > 1, meta)
    back, _ = read_image(tmp_path / "bool.nii.gz")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back[0], labels > 1)


def test_channels_round_trip_through_the_fourth_axis(tmp_path: Path):
    meta = _oblique_meta()
    array = np.random.default_rng(2).random((3, 4, 5, 6), dtype=np.float32)
    write_image(tmp_path / "probabilities.nii.gz", array, meta)
    assert nib.load(str(tmp_path / "probabilities.nii.gz")).shape == (4, 5, 6, 3)  # channels last on disk
    back, _ = read_image(tmp_path / "probabilities.nii.gz")
    np.testing.assert_array_equal(back, array)


def test_mask_overlays_the_nifti_it_was_predicted_from(shared_data: Path, tmp_path: Path):
    image, meta = read_image(shared_data / "nifti" / "nibabel_testdata" / "anatomical.nii")
    mask = (image > image.mean()).astype(np.uint8)
    write_image(tmp_path / "mask.nii.gz", mask, meta)
    # what a viewer sees: the same grid and the same world placement as the source
    source, written = nib.load(meta.source), nib.load(str(tmp_path / "mask.nii.gz"))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    np.testing.assert_allclose(written.header.get_qform(), source.affine, atol=1e-5)
    assert int(written.header["sform_code"]) > 0
    back, back_meta = read_image(tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(back, mask)
    assert back.dtype == np.uint8
    assert back_meta.orientation == meta.orientation == "LAS"


def test_mask_from_a_dicom_series_lands_on_the_same_world_points(shared_data: Path, tmp_path: Path):
    folder = shared_data / "dicom" / "tcia_brain_tumor_progression_PGBM-003" / "T1post"
    image, meta = read_image(folder)
    mask = (image > 300).astype(np.uint8)  # (1, D, H, W)
    write_image(tmp_path / "mask.nii.gz", mask, meta)
    written = nib.load(str(tmp_path / "mask.nii.gz"))
    assert written.shape == image.shape[1:]
    np.testing.assert_allclose(written.affine, meta.affine, atol=1e-4)
    corner = np.array([21, 319, 279, 1])  # the last voxel: errors in any column of the affine show here
    np.testing.assert_allclose(written.affine @ corner, meta.affine @ corner, atol=1e-3)
    back, _ = read_image(tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(back, mask)


def test_mask_from_a_2d_dicom_is_one_slice_thick(shared_data: Path, tmp_path: Path):
    image, meta = read_image(shared_data / "dicom" / "pydicom_testfiles" / "CT_small.dcm")
    mask = (image > 0).astype(np.uint8)  # (1, H, W)
    write_image(tmp_path / "mask.nii.gz", mask, meta)
    written = nib.load(str(tmp_path / "mask.nii.gz"))
    assert written.shape == (128, 128, 1)
    np.testing.assert_allclose(written.affine @ [10, 20, 0, 1], meta.affine @ [10, 20, 0, 1], atol=1e-4)


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (np.random.default_rng(3).integers(0, 256, (1, 9, 11)).astype(np.uint8), np.uint8),
        (np.random.default_rng(4).integers(0, 65536, (1, 9, 11)).astype(np.uint16), np.uint16),
        (np.random.default_rng(5).integers(0, 256, (3, 9, 11)).astype(np.uint8), np.uint8),
        (np.random.default_rng(6).integers(0, 3, (1, 9, 11)), np.uint8),  # int64 labels are stored as uint8
    ],
)
def test_png_round_trip(tmp_path: Path, array: np.ndarray, dtype: type):
    meta = ImageMeta(spacing=(1.0, 1.0), affine=np.eye(4))
    write_image(tmp_path / "out.png", array, meta)
    back, _ = read_image(tmp_path / "out.png")
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        ("labels.png", np.full((1, 4, 4), 300), "do not fit an 8-bit PNG"),
        ("colour.png", np.zeros((3, 4, 4), np.uint16), "16-bit colour"),
        ("four.png", np.zeros((4, 4, 4), np.uint8), r"expected a \(1, H, W\) or \(3, H, W\)"),
        ("soft.png", np.full((1, 4, 4), 0.5), "fractions"),
        ("mask.nii.gz", np.zeros((2, 2)), "3 spatial axes"),
        ("nan.nii.gz", np.full((1, 2, 2, 2), np.nan, np.float32), "NaN"),
        ("mask.jpg", np.zeros((1, 4, 4), np.uint8), "write_image writes .nii, .nii.gz, .png"),
    ],
)
def test_unwritable_arrays_fail_before_touching_the_file(tmp_path: Path, name: str, array: np.ndarray, message: str):
    target = tmp_path / name
    target.write_bytes(b"previous content")
    with pytest.raises(ValueError, match=message):
        write_image(target, array, _oblique_meta())
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left behind


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "mask.nii.gz"
    write_image(target, np.ones((1, 2, 2, 2), np.uint8), _oblique_meta())
    before = target.read_bytes()

    def crash(image, filename):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", crash)
    with pytest.raises(WriteError, match=r"disk full \(the previous mask.nii.gz is intact"):
        write_image(target, np.zeros((1, 2, 2, 2), np.uint8), _oblique_meta())
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nii.gz"]


def test_written_files_follow_the_umask_like_any_other_file(tmp_path: Path):
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "mask.nii.gz", np.ones((1, 2, 2, 2), np.uint8), _oblique_meta())
        write_image(tmp_path / "mask.png", np.ones((1, 2, 2), np.uint8), _oblique_meta())
    finally:
        os.umask(old)
    # a temp file made by mkstemp is 0600; renamed into place it would hide the mask from a viewer's user
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {"0o644"}
