"""Readers on every real DICOM, NIfTI, PNG and MedMNIST file in ../shared/data, and one ReadError naming
the file for each kind of bad input.

Axis convention checked here: DICOM (C, [slice,] row, column) with slices sorted along the slice normal;
NIfTI (C, X, Y, Z) as stored; pictures (C, row, column). meta.affine maps the spatial indices, in array
order, to RAS+ mm.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medattn.data.medmnist import medmnist_splits, read_medmnist
from medattn.data.meta import ImageMeta
from medattn.data.readers import SUPPORTED_SUFFIXES, read_image
from medattn.errors import ConfigError, ReadError

MR_VARIANTS = ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"]
LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def samples(shared_data: Path) -> Path:
    return shared_data / "dicom" / "pydicom_testfiles"


@pytest.fixture(scope="module")
def series_root(shared_data: Path) -> Path:
    return shared_data / "dicom" / "tcia_brain_tumor_progression_PGBM-003"


@pytest.fixture(scope="module")
def nifti_dir(shared_data: Path) -> Path:
    return shared_data / "nifti" / "nibabel_testdata"


def _dicom(path: Path, pixels: np.ndarray | None, **tags) -> Path:
    """A minimal MR DICOM file: int16 pixels (one frame, or frames along axis 0) plus the given tags."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.PatientID = "MR", "1.2.826.0.1.1", "P1"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
        ds.PixelData = pixels.astype("<i2").tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


# ---- DICOM ---------------------------------------------------------------------------------------------


def test_every_pydicom_sample_file_reads(samples: Path):
    expected = {
        "CT_small.dcm": (1, 128, 128),
        "MR_small.dcm": (1, 64, 64),
        "SC_rgb_rle.dcm": (3, 100, 100),
        **dict.fromkeys(MR_VARIANTS, (1, 64, 64)),
    }
    files = sorted(samples.glob("*.dcm"))
    assert {f.name for f in files} >= set(expected)
    for file in files:  # every file in the folder, including any added later
        array, meta = read_image(file)
        assert array.shape == expected.get(file.name, array.shape), file.name
        assert array.dtype.byteorder in "=|"
        assert meta.source == str(file)
        assert meta.spatial_dims == 2
        assert len(meta.orientation) == 2
        json.dumps(meta.to_dict())  # DSfloat, MultiValue and friends must come out as plain JSON


@pytest.mark.parametrize("name", MR_VARIANTS)
def test_every_mr_transfer_syntax_decodes_to_the_same_pixels(samples: Path, name: str):
    reference, meta = read_image(samples / "MR_small.dcm")
    array, other = read_image(samples / name)
    assert array.dtype == reference.dtype == np.int16  # no rescale tags: the stored type is kept
    np.testing.assert_array_equal(array, reference)
    assert other.modality == "MR"
    assert other.spacing == meta.spacing == (0.3125, 0.3125)
    np.testing.assert_allclose(other.affine, meta.affine)


def test_ct_rescale_gives_hounsfield_units(samples: Path):
    array, meta = read_image(samples / "CT_small.dcm")
    stored = pydicom.dcmread(samples / "CT_small.dcm").pixel_array
    assert array.dtype == np.float32  # intercept -1024 applied
    # stored values run 128..2191; with the intercept that is -896..1167 HU (fat/air up to bone)
    assert (array.min(), array.max()) == (-896.0, 1167.0)
    np.testing.assert_array_equal(array[0], stored.astype(np.float32) - 1024)
    assert meta.extra["rescale"] == {"slope": 1.0, "intercept": -1024.0, "applied": True}
    assert meta.modality == "CT"
    assert meta.series_uid
    assert meta.spacing == pytest.approx((0.661468, 0.661468))
    # axial slice: pixel (row 10, column 20) sits at IPP + 20 mm*x + 10 mm*y in LPS, mirrored in x, y for RAS
    ipp = np.array([-158.135803, -179.035797, -75.699997])
    world = meta.affine @ [10, 20, 0, 1]
    np.testing.assert_allclose(world[:3], (ipp + 0.661468 * np.array([20, 10, 0])) * LPS_TO_RAS, atol=1e-4)
    assert meta.orientation == "PL"  # rows go posterior, columns go left


def test_rgb_rle_secondary_capture(samples: Path):
    array, meta = read_image(samples / "SC_rgb_rle.dcm")
    assert array.shape == (3, 100, 100)
    assert array.dtype == np.uint8
    assert meta.modality == "OT"
    assert meta.extra["PhotometricInterpretation"] == "RGB"
    reference = pydicom.dcmread(samples / "SC_rgb_rle.dcm").pixel_array  # (H, W, 3)
    np.testing.assert_array_equal(array, reference.transpose(2, 0, 1))


def test_oblique_gapped_series_is_stacked_by_position(series_root: Path, tmp_path: Path):
    folder = series_root / "T1post"
    array, meta = read_image(folder)
    assert array.shape == (1, 22, 320, 280)  # (C, slice, row, column)
    assert array.dtype == np.uint16
    # SOURCE.md's 6.385 mm is only the z part of the step; along the oblique normal the planes are 6.5 mm
    # apart (= SpacingBetweenSlices; 5 mm slices plus a 1.5 mm gap).
    assert meta.spacing == pytest.approx((6.5, 0.6875, 0.6875), abs=1e-3)
    assert meta.affine[2, 0] == pytest.approx(6.385, abs=1e-3)
    np.testing.assert_allclose(np.linalg.norm(meta.affine[:3, :3], axis=0), meta.spacing, rtol=1e-6)
    assert abs(meta.affine[2, 1]) > 0.1  # oblique: moving down a row also moves in z
    assert meta.orientation == "SPL"
    assert meta.modality == "MR"
    assert meta.extra["slice_order"] == "ImagePositionPatient"
    assert meta.extra["patient_id"] == "PGBM-003"
    # the first slice is the file lowest along the normal, and its IPP is the affine's origin
    headers = {f: pydicom.dcmread(f) for f in folder.glob("*.dcm")}
    iop = np.array(next(iter(headers.values())).ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    lowest = min(headers, key=lambda f: float(np.dot(normal, np.array(headers[f].ImagePositionPatient, float))))
    np.testing.assert_array_equal(array[0, 0], headers[lowest].pixel_array)
    np.testing.assert_allclose(meta.affine[:3, 3], np.array(headers[lowest].ImagePositionPatient) * LPS_TO_RAS)
    # shuffled file names must give the same volume: sorting is by position, not by name
    names = list(range(len(headers)))
    random.Random(3).shuffle(names)
    for name, file in zip(names, sorted(headers), strict=True):
        shutil.copy(file, tmp_path / f"slice{name:02d}.dcm")
    shuffled, shuffled_meta = read_image(tmp_path)
    np.testing.assert_array_equal(shuffled, array)
    np.testing.assert_allclose(shuffled_meta.affine, meta.affine)


def test_signed_series_with_unit_spacing(series_root: Path):
    array, meta = read_image(series_root / "HippoCrop")
    assert array.shape == (1, 40, 50, 34)
    assert array.dtype == np.int16
    assert (array.min(), array.max()) == (2, 194)
    assert meta.spacing == pytest.approx((1.0, 1.0, 1.0))
    # axial slices: slice -> superior (+z), row -> posterior (-y in RAS), column -> left (-x in RAS)
    np.testing.assert_allclose(meta.affine[:3, :3], [[0, 0, -1], [0, -1, 0], [1, 0, 0]], atol=1e-6)
    assert meta.orientation == "SPL"


def test_series_uid_picks_one_series_from_a_mixed_folder(series_root: Path, tmp_path: Path):
    for file in (series_root / "HippoCrop").glob("*.dcm"):
        shutil.copy(file, tmp_path / f"h{file.name}")
    shutil.copy(series_root / "T1post" / "000000.dcm", tmp_path / "t1.dcm")
    uid = str(pydicom.dcmread(series_root / "HippoCrop" / "1.dcm").SeriesInstanceUID)
    array, meta = read_image(tmp_path, series_uid=uid)
    assert array.shape == (1, 40, 50, 34)
    assert meta.series_uid == uid
    with pytest.raises(ReadError, match=f"no series '9.9' here; series found: {uid} \\(.*40 file\\(s\\) of"):
        read_image(tmp_path, series_uid="9.9")
    with pytest.raises(ConfigError, match="picks a series inside a DICOM folder"):
        read_image(tmp_path / "t1.dcm", series_uid=uid)


def test_series_without_positions_falls_back_to_instance_number(tmp_path: Path):
    planes = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    for number, name in zip((3, 1, 2), ("a", "b", "c"), strict=True):
        _dicom(
            tmp_path / f"{name}.dcm",
            planes[number - 1],
            InstanceNumber=number,
            SliceThickness=2.5,
            PixelSpacing=[0.5, 0.5],
        )
    array, meta = read_image(tmp_path)
    np.testing.assert_array_equal(array[0], planes)
    assert meta.spacing == (2.5, 0.5, 0.5)
    assert meta.extra["slice_order"] == "InstanceNumber"


def test_multiframe_file_sorts_frames_by_their_positions(tmp_path: Path):
    from pydicom.dataset import Dataset

    frames = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    per_frame = []
    for z in (4.0, 2.0, 0.0):  # stored top-down: the reader must put z = 0 first
        position, group = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, z]
        group.PlanePositionSequence = [position]
        per_frame.append(group)
    orientation, measures, shared = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing = [0.8, 0.8]
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    path = _dicom(
        tmp_path / "enhanced.dcm",
        frames,
        PerFrameFunctionalGroupsSequence=per_frame,
        SharedFunctionalGroupsSequence=[shared],
    )
    array, meta = read_image(path)
    np.testing.assert_array_equal(array[0], frames[::-1])
    assert meta.spacing == pytest.approx((2.0, 0.8, 0.8))
    assert meta.orientation == "SPL"


# ---- NIfTI ---------------------------------------------------------------------------------------------


def test_every_nifti_file_keeps_nibabels_affine_and_values(nifti_dir: Path):
    expected = {
        "anatomical.nii": ((1, 33, 41, 25), np.int16),
        "functional.nii": ((20, 17, 21, 3), np.float32),
        "example4d.nii.gz": ((2, 128, 96, 24), np.int16),
        "example_nifti2.nii.gz": ((2, 32, 20, 12), np.int16),
    }
    files = sorted(nifti_dir.glob("*.nii*"))
    assert {f.name for f in files} >= set(expected)
    for file in files:
        array, meta = read_image(file)
        reference = nib.load(str(file))
        shape, dtype = expected.get(file.name, (array.shape, array.dtype))
        assert (array.shape, array.dtype) == (shape, dtype), file.name
        assert array.dtype.byteorder in "=|"
        assert array.flags.c_contiguous
        np.testing.assert_array_equal(meta.affine, reference.affine)
        assert meta.spacing == pytest.approx(reference.header.get_zooms()[:3])
        assert meta.orientation == "".join(nib.aff2axcodes(reference.affine))
        data = reference.get_fdata()
        expected_data = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)  # 4th axis -> channels
        np.testing.assert_allclose(array, expected_data, rtol=1e-6)


# ---- pictures ------------------------------------------------------------------------------------------


def test_real_png_grayscale_and_rgb(shared_data: Path):
    em = shared_data / "isbi2012_em" / "train" / "image" / "0.png"
    array, meta = read_image(em)
    assert (array.shape, array.dtype) == ((1, 512, 512), np.uint8)
    np.testing.assert_array_equal(array[0], np.asarray(Image.open(em)))
    assert (meta.spacing, meta.orientation, meta.modality) == ((1.0, 1.0), "", "OT")
    label, _ = read_image(shared_data / "isbi2012_em" / "train" / "label" / "0.png")
    assert set(np.unique(label)) <= {0, 255}
    name = "TCGA_CS_4942_19970222_10.png"
    rgb, _ = read_image(shared_data / "lgg_mri" / "images" / name)
    assert (rgb.shape, rgb.dtype) == ((3, 128, 128), np.uint8)
    np.testing.assert_array_equal(rgb[1], np.asarray(Image.open(shared_data / "lgg_mri" / "images" / name))[..., 1])
    mask, _ = read_image(shared_data / "lgg_mri" / "masks" / name)
    assert mask.shape == (1, 128, 128)


def test_picture_modes(tmp_path: Path):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 7)]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray).convert("P").save(tmp_path / "palette.png")  # a gray palette: one channel
    Image.fromarray(gray.astype(np.uint16) * 300).save(tmp_path / "deep.png")
    pages = [Image.fromarray(gray + i) for i in range(4)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    rgba, _ = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(rgba, np.stack([gray] * 3))  # alpha dropped
    palette, _ = read_image(tmp_path / "palette.png")
    assert palette.shape == (1, 12, 10)
    deep, _ = read_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint16
    assert int(deep.max()) == int(gray.max()) * 300
    stack, meta = read_image(tmp_path / "stack.tif")
    assert stack.shape == (1, 4, 12, 10)
    assert meta.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(stack[0, 3], gray + 3)


# ---- MedMNIST ------------------------------------------------------------------------------------------


def test_medmnist_2d_and_3d(shared_data: Path):
    breast = shared_data / "medmnist" / "breastmnist.npz"
    assert medmnist_splits(breast) == ["train", "val", "test"]
    images, labels = read_medmnist(breast, "train")
    assert (images.shape, images.dtype) == ((546, 1, 28, 28), np.uint8)
    assert (labels.shape, labels.dtype) == ((546, 1), np.int64)
    assert np.bincount(labels[:, 0]).tolist() == [147, 399]  # SOURCE.md's class balance
    volumes, labels = read_medmnist(shared_data / "medmnist" / "adrenalmnist3d.npz", "train")
    assert (volumes.shape, volumes.dtype, labels.shape) == ((1188, 1, 28, 28, 28), np.uint8, (1188, 1))


def test_medmnist_colour_goes_channel_first(tmp_path: Path):
    images = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", train_images=images, train_labels=np.arange(5).reshape(5, 1))
    loaded, labels = read_medmnist(tmp_path / "rgb.npz", "train")
    np.testing.assert_array_equal(loaded, images.transpose(0, 3, 1, 2))
    assert labels.tolist() == [[0], [1], [2], [3], [4]]


def test_meta_round_trips_through_json():
    meta = ImageMeta(
        spacing=(2.0, 1.0, 1.0),
        affine=np.diag([2.0, 1.0, 1.0, 1.0]),
        orientation="RAS",
        modality="CT",
        source="x.nii",
        series_uid="1.2",
        extra={"WindowCenter": [40.0, 400.0]},
    )
    back = ImageMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert (back.spacing, back.orientation, back.series_uid, back.extra) == (
        meta.spacing,
        meta.orientation,
        meta.series_uid,
        meta.extra,
    )
    np.testing.assert_array_equal(back.affine, meta.affine)
    assert back.spatial_dims == 3
    assert ".nii.gz" in SUPPORTED_SUFFIXES
    assert ".dcm" in SUPPORTED_SUFFIXES


# ---- bad input: exactly one ReadError, naming the file and the reason -----------------------------------

CT_SMALL = "dicom/pydicom_testfiles/CT_small.dcm"
SERIES = "dicom/tcia_brain_tumor_progression_PGBM-003"
IMAGES = np.zeros((5, 4, 4), np.uint8)


def _put(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _copies(folder: Path, *files: Path) -> Path:
    for file in files:
        shutil.copy(file, folder / f"{file.parent.name}_{file.name}")
    return folder


def _nan_nifti(path: Path) -> Path:
    data = np.ones((4, 4, 4), dtype=np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _cut_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    return _put(path, path.read_bytes()[:300])


def _gapped_series(tmp: Path, data: Path) -> Path:
    files = [
        f
        for f in (data / SERIES / "T1post").glob("*.dcm")
        if pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber != 10
    ]  # one slice from the middle
    return _copies(tmp, *files)


# case -> (needs ../shared/data, what the message must say, how to make the bad input in tmp)
BAD_INPUTS = {
    "truncated_dicom": (True, "no pixel data", lambda t, d: _put(t / "cut.dcm", (d / CT_SMALL).read_bytes()[:500])),
    "text_named_dcm": (False, "not a readable DICOM", lambda t, d: _put(t / "notes.dcm", b"not an image")),
    "dicom_without_pixels": (False, "no pixel data", lambda t, d: _dicom(t / "header.dcm", None, Rows=4, Columns=4)),
    "two_series": (
        True,
        "holds 2 series: 1.2.826.0.1.3680043",
        lambda t, d: _copies(t, d / SERIES / "T1post/000000.dcm", d / SERIES / "HippoCrop/1.dcm"),
    ),
    "gapped_series": (True, "not evenly spaced", _gapped_series),
    "empty_folder": (False, "empty folder", lambda t, d: t),
    "folder_without_dicom": (False, "no DICOM files", lambda t, d: _put(t / "readme.txt", b"no images").parent),
    "truncated_nifti_gz": (
        True,
        "not a readable NIfTI",
        lambda t, d: _put(t / "cut.nii.gz", (d / "nifti/nibabel_testdata/example4d.nii.gz").read_bytes()[:3000]),
    ),
    "garbage_nifti": (False, "not a readable NIfTI", lambda t, d: _put(t / "garbage.nii", b"\x00\x01" * 200)),
    "nan_nifti": (False, "2 NaN or infinite voxel", lambda t, d: _nan_nifti(t / "nan.nii.gz")),
    "truncated_png": (False, "not a readable image", lambda t, d: _cut_png(t / "cut.png")),
    "npz_not_zip": (False, "not a valid .npz", lambda t, d: _put(t / "fake.npz", b"PK but not a zip archive")),
    "npz_without_test_split": (
        False,
        "no 'test' split .* splits in the file: train, val",
        lambda t, d: _npz(
            t / "partial.npz",
            train_images=IMAGES,
            train_labels=np.zeros((5, 1)),
            val_images=IMAGES,
            val_labels=np.zeros((5, 1)),
        ),
    ),
    "npz_length_mismatch": (
        False,
        "5 images but 4 labels",
        lambda t, d: _npz(t / "mismatch.npz", test_images=IMAGES, test_labels=np.zeros((4, 1))),
    ),
    "npz_wrong_dims": (
        False,
        r"expected \(N, H, W\)",
        lambda t, d: _npz(t / "flat.npz", test_images=np.zeros((5, 16)), test_labels=np.zeros((5, 1))),
    ),
    "missing_file": (False, "no such file", lambda t, d: t / "gone.nii.gz"),
    "unknown_suffix": (False, r"unsupported format '.xyz' \(supported: .dcm", lambda t, d: _put(t / "a.xyz", b"x")),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_read_error_naming_the_file(case: str, tmp_path: Path, request: pytest.FixtureRequest):
    needs_data, reason, make = BAD_INPUTS[case]
    path = make(tmp_path, request.getfixturevalue("shared_data") if needs_data else None)
    read = (lambda p: read_medmnist(p, "test")) if path.suffix == ".npz" else read_image
    with pytest.raises(ReadError, match=reason) as info:
        read(path)
    assert str(path) in str(info.value)
    assert info.value.path == path
