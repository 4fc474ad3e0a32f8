"""The formats medattn reads, as fuzz targets over real files in ../shared/data (see medattn/fuzz.py).

Images (DICOM files and series, NIfTI, PNG, JPEG/TIFF), MedMNIST .npz archives, CSV manifests, run configs and
model cards. Seeds that are not in the shared data (JPEG/TIFF pictures, a manifest, a config, a finished run) are
made once per worker in its scratch folder from files that are.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from medattn.fuzz import Target, check_image

NAMES = ("dicom", "dicom_series", "nifti", "png", "jpeg_tiff", "npz", "csv", "config", "card")


def _read_image(path: Path) -> str:
    from medattn.data.readers import read_image

    return check_image(read_image(path))


def _read_npz(path: Path) -> str:
    from medattn.data.medmnist import labels_are_integers, medmnist_splits, read_medmnist

    for split in medmnist_splits(path):
        images, labels = read_medmnist(path, split)
        if len(images) != len(labels):
            return "bad-array"
    labels_are_integers(path)
    return "read"


def _read_manifest(path: Path) -> str:
    from medattn.data.manifest import read_manifest

    read_manifest(path, required=("path", "label"), files=("path",))
    return "read"


def _read_config(path: Path) -> str:
    from medattn.config import load_config

    load_config(path)
    return "read"


def _read_card(path: Path) -> str:
    from medattn.engine.loaded import load_run

    loaded = load_run(path.parent)
    _ = loaded.spec, loaded.task, loaded.labels
    return "read"


def _write_beside(workdir: Path, data: bytes, seed: Path) -> Path:
    """The mutant under the seed's own suffix (readers pick the format from it)."""
    suffix = "".join(seed.suffixes[-2:]) if seed.name.endswith(".gz") else seed.suffix
    path = workdir / f"mutant{suffix}"
    path.write_bytes(data)
    return path


class _InPlace:
    """Mutants written over one file of a folder (a DICOM series, a run directory), the last one restored first."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.damaged: Path | None = None

    def __call__(self, data: bytes, seed: Path) -> Path:
        if self.damaged is not None:
            shutil.copyfile(self.damaged, self.folder / self.damaged.name)
        self.damaged = seed
        path = self.folder / seed.name
        path.write_bytes(data)
        return path


def _pictures(workdir: Path, png: Path) -> list[Path]:
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
    seeds = [workdir / "seeds" / name for name in ("picture.jpg", "picture.tif", "gray.tif")]
    rgb.save(seeds[0], quality=90)
    rgb.save(seeds[1], compression="tiff_lzw")
    rgb.convert("L").save(seeds[2])
    return seeds


def _finished_run(workdir: Path) -> Path:
    """A one-epoch run on a tiny phantom: its model.json is the card seed."""
    from medattn.config import RunConfig
    from medattn.data.phantom import save_medmnist_npz
    from medattn.engine.trainer import fit
    from medattn.runs import prepare_run_dir

    npz = workdir / "seeds" / "phantom.npz"
    save_medmnist_npz(npz, n_train=16, n_val=8, n_test=8, spatial_dims=2, size=16, num_classes=2, seed=0)
    config = RunConfig()
    config.data.path = str(npz)
    config.model.options = {"widths": [4, 8, 8]}
    config.train.epochs, config.train.batch_size, config.train.threads = 1, 8, 1
    run = prepare_run_dir(workdir / "seeds" / "run", resume=False, force=True)
    fit(config, run, quiet=True)
    return run


def targets(workdir: Path, *, data: Path, names: tuple[str, ...] | None = None) -> dict[str, Target]:
    """The targets `names` (default: all), seeded from the shared data folder `data`; scratch files go under
    `workdir`. The card target trains a one-epoch run first (seconds), so it is made only when asked for."""
    from medattn.config import RunConfig, save_config

    (workdir / "seeds").mkdir(parents=True, exist_ok=True)
    write = partial(_write_beside, workdir)
    dicom = data / "dicom"
    originals = dicom / "tcia_brain_tumor_progression_PGBM-003" / "HippoCrop"
    series = workdir / "series"
    shutil.copytree(originals, series, dirs_exist_ok=True)
    lgg = sorted((data / "lgg_mri" / "images").glob("*.png"))[:3]
    em = data / "isbi2012_em" / "train"
    hippocampus = sorted((data / "msd_hippocampus" / "imagesTr").glob("*.nii.gz"))[:2]

    manifest = workdir / "seeds" / "manifest.csv"
    for index, picture in enumerate(lgg):
        shutil.copyfile(picture, workdir / f"image{index}.png")  # where the manifest's relative paths point
    rows = [f"image{i}.png,{'tumour' if i % 2 else 'none'},P{i},{('train', 'val', 'test')[i]}" for i in range(3)]
    manifest.write_text("path,label,patient_id,split\n" + "\n".join(rows) + "\n")
    config = RunConfig()
    config.data.path = str(manifest)
    config.data.size = [64, 64]
    config.model.name = "attn_resnet"
    save_config(config, workdir / "seeds" / "config.yaml")

    found = {
        "dicom": Target("dicom", sorted((dicom / "pydicom_testfiles").glob("*.dcm")), write, _read_image),
        "dicom_series": Target("dicom_series", sorted(originals.glob("*.dcm"))[:8], _InPlace(series), _read_image),
        "nifti": Target(
            "nifti", sorted((data / "nifti" / "nibabel_testdata").glob("*.nii*")) + hippocampus, write, _read_image
        ),
        "png": Target("png", [*lgg, em / "image" / "0.png", em / "label" / "0.png"], write, _read_image),
        "jpeg_tiff": Target("jpeg_tiff", _pictures(workdir, lgg[0]), write, _read_image),
        "npz": Target("npz", [data / "medmnist" / "breastmnist.npz"], write, _read_npz),
        "csv": Target("csv", [manifest], lambda d, s: _write_in(workdir, "mutant.csv", d), _read_manifest),
        "config": Target("config", [workdir / "seeds" / "config.yaml"], write, _read_config),
    }
    if names is None or "card" in names:
        run = _finished_run(workdir)
        damaged_run = workdir / "run"
        shutil.copytree(run, damaged_run, dirs_exist_ok=True)
        found["card"] = Target("card", [run / "model.json"], _InPlace(damaged_run), _read_card)
    return {name: target for name, target in found.items() if names is None or name in names}


def _write_in(workdir: Path, name: str, data: bytes) -> Path:
    path = workdir / name
    path.write_bytes(data)
    return path


def seed_counts(data: Path, names: list[str] | None = None) -> dict[str, int]:
    """How many seed files each target (all, or `names`) has: what `fuzz.plan` needs."""
    import tempfile

    wanted = tuple(names or NAMES)
    with tempfile.TemporaryDirectory() as scratch:
        found = targets(Path(scratch), data=data, names=tuple(n for n in wanted if n != "card"))
    counts = {name: len(target.seeds) for name, target in found.items()} | {"card": 1}  # one run's model.json
    return {name: counts[name] for name in wanted}
