"""`stored_dtype` answers from headers what `read_image` returns, for every real file and each picture mode."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.data.readers import read_image, write_image
from medattn.data.stored import stored_dtype


def _shared_files(shared_data: Path) -> list[Path]:
    nifti = sorted((shared_data / "nifti").rglob("*.nii*"))
    hippocampus = sorted((shared_data / "msd_hippocampus").rglob("imagesTr/*.nii.gz"))
    pictures = sorted((shared_data / "lgg_mri" / "images").glob("*.png"))[:3]
    pictures += sorted((shared_data / "isbi2012_em" / "train").rglob("*.png"))[:2]
    dicom = sorted(p for p in (shared_data / "dicom").rglob("*") if p.is_file() and p.suffix in ("", ".dcm"))
    return nifti + hippocampus[:12] + pictures + dicom[:10]


def test_header_dtype_matches_the_read_array_on_every_shared_file(shared_data: Path):
    seen = set()
    for path in _shared_files(shared_data):
        try:
            array, _ = read_image(path)
        except Exception:  # noqa: BLE001  unreadable samples are the readers' tests' business
            continue
        assert stored_dtype(path) == array.dtype, path
        seen.add(str(array.dtype))
    assert {"uint8", "float32"} <= seen  # MSD Hippocampus mixes both; the pictures are uint8


@pytest.mark.parametrize(
    ("array", "suffix"),
    [
        (np.arange(64, dtype=np.uint8).reshape(1, 8, 8), ".png"),
        (np.arange(64, dtype=np.uint16).reshape(1, 8, 8) * 900, ".png"),
        (np.arange(192, dtype=np.uint8).reshape(3, 8, 8), ".png"),
        (np.arange(512, dtype=np.int16).reshape(1, 8, 8, 8) - 1000, ".nii.gz"),
        (np.arange(512, dtype=np.float64).reshape(1, 8, 8, 8), ".nii.gz"),
        (np.arange(64, dtype=np.uint8).reshape(1, 8, 8, 1), ".nii"),
    ],
)
def test_header_dtype_matches_for_each_type_written(array: np.ndarray, suffix: str, tmp_path: Path):
    from medattn.data.meta import ImageMeta

    path = tmp_path / f"image{suffix}"
    if suffix == ".png":
        picture = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
        Image.fromarray(picture).save(path)
    else:
        write_image(path, array, ImageMeta(spacing=(1.0,) * (array.ndim - 1), affine=np.eye(4)))
    assert stored_dtype(path) == read_image(path)[0].dtype
