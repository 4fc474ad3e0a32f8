"""Intensity recipes per modality, resizing, and the NaN guard."""

import numpy as np
import pytest
import torch

from medattn.data.meta import require_finite
from medattn.data.preprocess import Intensity, choose_intensity, resize, to_unit
from medattn.errors import ConfigError, ReadError


def test_ct_window_maps_hounsfield_units_to_unit_range():
    hu = np.array([[[-1000.0, -160.0, 40.0, 240.0, 3000.0]]], dtype=np.float32)
    out = to_unit(hu, Intensity(mode="ct", window=(40.0, 400.0)))
    assert out.tolist() == [[[0.0, 0.0, 0.5, 1.0, 1.0]]]


def test_mr_zscore_uses_the_foreground():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 32, 32), dtype=np.float32)
    image[:, 8:24, 8:24] = rng.normal(300, 50, size=(16, 16))
    out = to_unit(image, Intensity(mode="mr"))
    foreground = out[:, 8:24, 8:24]
    assert foreground.mean() == pytest.approx(0.0, abs=1e-4)
    assert foreground.std() == pytest.approx(1.0, abs=1e-3)


def test_eight_bit_scaling():
    image = np.array([[[0, 51, 255]]], dtype=np.uint8)
    intensity = choose_intensity("auto", image.dtype)
    assert intensity.mode == "scale"
    assert to_unit(image, intensity)[0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])


@pytest.mark.parametrize(
    ("modality", "dtype", "dicom", "mode"),
    [
        ("auto", np.int16, "CT", "ct"),
        ("auto", np.int16, "MR", "mr"),
        ("auto", np.uint16, None, "scale"),
        ("auto", np.float32, None, "minmax"),
        ("xray", np.uint8, None, "scale"),
        ("xray", np.float32, None, "minmax"),
        ("ct", np.int16, None, "ct"),
    ],
)
def test_auto_choice(modality, dtype, dicom, mode):
    assert choose_intensity(modality, np.dtype(dtype), dicom_modality=dicom).mode == mode


def test_unknown_modality():
    with pytest.raises(ConfigError, match="data.modality"):
        choose_intensity("pet", np.dtype(np.uint8))


def test_intensity_round_trips_through_its_dict():
    intensity = Intensity(mode="ct", window=(50.0, 350.0), mean=0.2, std=0.3)
    assert Intensity.from_dict(intensity.to_dict()) == intensity


def test_resize_2d_and_3d():
    assert resize(torch.rand(2, 1, 28, 28), [14, 14]).shape == (2, 1, 14, 14)
    assert resize(torch.rand(2, 1, 8, 8, 8), [16, 16, 16]).shape == (2, 1, 16, 16, 16)
    same = torch.rand(1, 1, 5, 5)
    assert resize(same, None) is same
    with pytest.raises(ConfigError, match="axes"):
        resize(torch.rand(1, 1, 8, 8), [8, 8, 8])


def test_nan_pixels_are_refused_with_a_count():
    image = np.ones((1, 4, 4), dtype=np.float32)
    image[0, 0, :2] = [np.nan, np.inf]
    with pytest.raises(ReadError, match="scan.nii: 2 NaN"):
        require_finite(image, "scan.nii")
