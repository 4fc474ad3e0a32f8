"""Readers on every real DICOM and NIfTI file in ../shared/data, and one clear error per bad input."""

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medattn.data.meta import ImageMeta
from medattn.data.readers import read_image, write_image
from medattn.errors import ReadError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DICOM = SHARED / "dicom" / "pydicom_testfiles"
SERIES = SHARED / "dicom" / "tcia_brain_tumor_progression_PGBM-003"
NIFTI = SHARED / "nifti" / "nibabel_testdata"

needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")


@needs_data
@pytest.mark.parametrize(
    "name",
    ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"],
)
def test_every_mr_transfer_syntax_decodes_to_the_same_pixels(name):
    reference, meta = read_image(DICOM / "MR_small.dcm")
    array, other = read_image(DICOM / name)
    assert array.shape == (1, 64, 64)
    assert array.dtype.byteorder in "=|"
    np.testing.assert_array_equal(array, reference)
    assert other.modality == "MR"
    assert other.spacing == meta.spacing


@needs_data
def test_ct_rescale_gives_hounsfield_units():
    array, meta = read_image(DICOM / "CT_small.dcm")
    assert array.shape == (1, 128, 128)
    assert array.dtype == np.float32  # slope/intercept applied
    assert meta.modality == "CT"
    assert array.min() < -500  # air and fat are negative in HU; raw stored values are not
    assert meta.spacing == pytest.approx((0.661468, 0.661468), rel=1e-4)


@needs_data
def test_rgb_rle_secondary_capture():
    array, meta = read_image(DICOM / "SC_rgb_rle.dcm")
    assert array.shape == (3, 100, 100)
    assert array.dtype == np.uint8
    assert meta.modality == "OT"


@needs_data
def test_oblique_gapped_series_is_stacked_by_position(tmp_path):
    array, meta = read_image(SERIES / "T1post")
    assert array.shape == (1, 22, 320, 280)
    assert array.dtype == np.uint16
    # planes are 6.5 mm apart along the oblique normal (6.385 mm along z alone): a gap over the 5 mm slices
    assert meta.spacing == pytest.approx((6.5, 0.6875, 0.6875), abs=0.01)
    norms = np.linalg.norm(meta.affine[:3, :3], axis=0)
    assert norms == pytest.approx(meta.spacing, abs=1e-3)
    assert abs(meta.affine[2, 1]) > 0.05  # oblique: the row axis has a z component
    assert meta.series_uid
    # file names in reverse order must give the same volume: sorting is by position, not by name
    for i, file in enumerate(sorted((SERIES / "T1post").iterdir())):
        shutil.copy(file, tmp_path / f"{99 - i:03d}.dcm")
    shuffled, _ = read_image(tmp_path)
    np.testing.assert_array_equal(shuffled, array)


@needs_data
def test_signed_series_with_unit_spacing():
    array, meta = read_image(SERIES / "HippoCrop")
    assert array.shape == (1, 40, 50, 34)
    assert array.dtype == np.int16
    assert meta.spacing == pytest.approx((1.0, 1.0, 1.0))


@needs_data
@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("anatomical.nii", (1, 33, 41, 25)),
        ("functional.nii", (20, 17, 21, 3)),
        ("example4d.nii.gz", (2, 128, 96, 24)),
        ("example_nifti2.nii.gz", (2, 32, 20, 12)),
    ],
)
def test_nifti_files_keep_affine_and_native_byte_order(name, shape):
    array, meta = read_image(NIFTI / name)
    reference = nib.load(str(NIFTI / name))
    assert array.shape == shape
    assert array.dtype.byteorder in "=|"
    np.testing.assert_allclose(meta.affine, reference.affine)
    assert meta.spacing == pytest.approx(reference.header.get_zooms()[:3])
    data = np.asarray(reference.dataobj)
    expected = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
    np.testing.assert_allclose(array, expected, rtol=1e-6)  # scaled data is float32 here, float64 in nibabel


@needs_data
def test_real_png_grayscale_and_rgb():
    em = sorted((SHARED / "isbi2012_em").rglob("*.png"))[0]
    array, meta = read_image(em)
    assert array.ndim == 3
    assert array.shape[0] in (1, 3)
    assert array.shape[1:] == (512, 512)
    lgg = sorted((SHARED / "lgg_mri").rglob("*.png"))[0]
    rgb, _ = read_image(lgg)
    assert rgb.shape[0] in (1, 3)
    assert meta.spacing == (1.0, 1.0)


# ---- bad input: one ReadError naming the file ----------------------------------------------------


def _expect(path, message):
    with pytest.raises(ReadError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value)


@needs_data
def test_truncated_dicom(tmp_path):
    bad = tmp_path / "cut.dcm"
    bad.write_bytes((DICOM / "CT_small.dcm").read_bytes()[:2000])
    _expect(bad, "cut.dcm")


def test_text_file_named_dcm(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is not an image")
    _expect(bad, "not a readable DICOM")


def test_dicom_without_pixels(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = "X"
    ds.Modality = "OT"
    path = tmp_path / "header_only.dcm"
    ds.save_as(path, enforce_file_format=True)
    _expect(path, "no pixel data")


@needs_data
def test_folder_with_two_series(tmp_path):
    shutil.copy(SERIES / "T1post" / "000000.dcm", tmp_path / "a.dcm")
    shutil.copy(SERIES / "HippoCrop" / "1.dcm", tmp_path / "b.dcm")
    _expect(tmp_path, "2 series")


def test_empty_folder(tmp_path):
    _expect(tmp_path, "empty folder")


def test_missing_file(tmp_path):
    _expect(tmp_path / "gone.nii.gz", "no such file")


def test_unknown_suffix(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_text("x")
    _expect(path, "unsupported format")


@needs_data
def test_truncated_nifti_gz(tmp_path):
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes((NIFTI / "example4d.nii.gz").read_bytes()[:3000])
    _expect(bad, "cut.nii.gz")


def test_garbage_nifti(tmp_path):
    bad = tmp_path / "garbage.nii"
    bad.write_bytes(b"\x00\x01" * 200)
    _expect(bad, "not a readable NIfTI")


def test_nan_in_float_nifti(tmp_path):
    data = np.ones((4, 4, 4), dtype=np.float32)
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = np.inf
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    _expect(path, "2 NaN or infinite")


def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(good)
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[:300])
    _expect(bad, "cut.png")


# ---- writers -----------------------------------------------------------------------------------


@needs_data
def test_nifti_mask_overlays_its_image(tmp_path):
    image, meta = read_image(NIFTI / "anatomical.nii")
    mask = (image > image.mean()).astype(np.uint8)
    write_image(tmp_path / "mask.nii.gz", mask, meta)
    back, back_meta = read_image(tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(back, mask)
    np.testing.assert_allclose(back_meta.affine, meta.affine)
    assert back.dtype == np.uint8
    assert back_meta.orientation == meta.orientation


def test_png_round_trip(tmp_path):
    labels = np.random.default_rng(1).integers(0, 3, (1, 20, 30)).astype(np.uint8)
    meta = ImageMeta(spacing=(1.0, 1.0), affine=np.eye(4))
    write_image(tmp_path / "labels.png", labels, meta)
    back, _ = read_image(tmp_path / "labels.png")
    np.testing.assert_array_equal(back, labels)


def test_meta_round_trips_through_a_dict():
    meta = ImageMeta(
        spacing=(2.0, 1.0, 1.0),
        affine=np.diag([2.0, 1.0, 1.0, 1.0]),
        orientation="RAS",
        modality="CT",
        source="x.nii",
        series_uid="1.2",
        extra={"WindowCenter": 40.0},
    )
    back = ImageMeta.from_dict(meta.to_dict())
    assert back.spacing == meta.spacing
    np.testing.assert_array_equal(back.affine, meta.affine)
    assert back.extra == meta.extra
