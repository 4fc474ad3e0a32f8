"""Translation end to end: pix2pix resumes exactly after a kill (its discriminator included), a short run on real
LGG slices beats the mean training image, and evaluate / predict give their numbers and files (2D PNG, 3D NIfTI
on the input's grid)."""

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from medattn.config import RunConfig, load_config
from medattn.engine.trainer import fit
from medattn.runs import prepare_run_dir
from medattn.tasks.translate.phantom import make_pairs, save_pairs_npz
from medattn.tasks.translate.task import TranslationTask
from run_cli import invoke

EVALUATE_KEYS = {"psnr", "ssim", "mae", "psnr_foreground", "ssim_foreground", "n", "baselines", "figure"}
SMALL = {"channels": [8, 16, 32], "embed_dim": 16, "heads": 2}


def _config(path, model="pix2pix", epochs=3, **data):
    config = RunConfig(task="translation")
    config.data.path = str(path)
    config.model.name = model
    config.model.options = dict(SMALL, **({"discriminator_width": 8} if model == "pix2pix" else {}))
    config.train.batch_size = 8
    config.train.threads = 1  # one thread: the same float sums in every run
    config.train.epochs = epochs
    for key, value in data.items():
        setattr(config.data, key, value)
    return config


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return save_pairs_npz(tmp_path_factory.mktemp("pairs") / "pairs.npz", n=40, size=32, seed=0)


def test_pix2pix_resumes_exactly_after_a_kill(pairs, tmp_path, monkeypatch):
    full = prepare_run_dir(tmp_path / "full", resume=False, force=False)
    fit(_config(pairs), full, quiet=True)
    real, calls = TranslationTask.validate, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed in epoch 2: epoch 1, and its discriminator, are checkpointed
        return real(self, *args, **kwargs)

    cut = prepare_run_dir(tmp_path / "cut", resume=False, force=False)
    monkeypatch.setattr(TranslationTask, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(_config(pairs), cut, quiet=True)
    monkeypatch.setattr(TranslationTask, "validate", real)
    fit(load_config(cut / "config.yaml"), cut, resume=True, quiet=True)

    def history(run):
        return [(r["epoch"], r["train_loss"], r["val_psnr"]) for r in csv.DictReader((run / "history.csv").open())]

    assert len(history(full)) == 3
    assert history(cut) == history(full)
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any("net." in k for k in a)  # the discriminator is training state, not the model
    assert sorted(p.name for p in (full / "validation").iterdir()) == [f"epoch-00{i}.png" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def lgg_slices(shared_data, tmp_path_factory):
    """LGG slices of 12 patients (every other slice), halved to 64 x 64: an npz of 3-channel images."""
    import csv as csv_module

    root = shared_data / "lgg_mri"
    rows = list(csv_module.DictReader((root / "manifest.csv").open()))
    patients = sorted({r["patient_id"] for r in rows})[:12]
    chosen = [r for r in rows if r["patient_id"] in patients and int(r["slice_number"]) % 2 == 0]
    images = []
    for row in chosen:
        rgb = np.asarray(Image.open(root / "images" / row["file"]), dtype=np.float32).transpose(2, 0, 1)
        images.append(rgb.reshape(3, 64, 2, 64, 2).mean(axis=(2, 4)).round().astype(np.uint8))
    path = tmp_path_factory.mktemp("lgg") / "lgg64.npz"
    np.savez(path, images=np.stack(images), patient_id=np.array([r["patient_id"] for r in chosen]))
    return path


def test_a_short_run_on_real_slices_beats_the_mean_image(lgg_slices, shared_data, tmp_path):
    """T1-pre + T1-post to FLAIR, split by patient: after a few epochs the model beats both trivial baselines."""
    config = _config(lgg_slices, model="unet_l1", epochs=5, source_channels=[0, 2], target_channels=[1])
    config.train.batch_size = 4  # more, smaller steps: a few hundred slices learn in a minute
    run = prepare_run_dir(tmp_path / "lgg", resume=False, force=False)
    fit(config, run, quiet=True)
    metrics = invoke("evaluate", run, "--json")
    assert set(metrics) >= EVALUATE_KEYS
    assert metrics["data_range"] == pytest.approx(255, abs=30)  # 8-bit intensities as stored
    mean_image = metrics["baselines"]["mean_image"]
    assert metrics["psnr"] > mean_image["psnr"] + 1.0, (metrics["psnr"], mean_image["psnr"])
    assert metrics["ssim"] > mean_image["ssim"]
    assert metrics["beats_mean_image"]
    slice_png = shared_data / "lgg_mri" / "images" / "TCGA_CS_4942_19970222_12.png"  # all three channels, 128 px
    payload = invoke("predict", run, slice_png, "--out-dir", tmp_path / "out", "--json")
    flair = np.asarray(Image.open(payload["predictions"][0]["output"]))
    assert flair.shape == (128, 128)
    assert flair.dtype == np.uint8
    truth = np.asarray(Image.open(slice_png))[..., 1].astype(float)
    assert np.corrcoef(flair.ravel(), truth.ravel())[0, 1] > 0.5


def test_cli_train_evaluate_and_predict_2d(pairs, tmp_path):
    run = tmp_path / "run"
    options = '{"channels": [8, 16, 32], "embed_dim": 16, "heads": 2}'
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  name: unet_l1\n  options: {options}\ntrain:\n  threads: 1\n")
    result = invoke("train", "--data", pairs, "--out", run, "--epochs", "2", "--config", config, "--json")
    assert result["task"] == "translation"
    assert "psnr" in result["val"]
    metrics = invoke("evaluate", run, "--json")
    assert set(metrics) >= EVALUATE_KEYS
    assert metrics["n"] == 6
    assert set(metrics["baselines"]) == {"mean_image", "intensity_mapping"}
    assert metrics["psnr_ci"][0] <= metrics["psnr"] <= metrics["psnr_ci"][1]
    source, _ = make_pairs(n=1, size=40, seed=7)  # another size than training's 32
    picture = tmp_path / "t1.png"
    Image.fromarray((source[0, 0] * 255).astype(np.uint8)).save(picture)
    two = tmp_path / "two.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([source[0, 0], source[0, 1]], axis=-1)[:, :, None, :], np.eye(4)), two)
    with pytest.raises(pytest.fail.Exception, match="1 channel"):  # one channel where the run takes two
        invoke("predict", run, picture, "--json")
    payload = invoke("predict", run, two, "--json")
    written = nib.load(payload["predictions"][0]["output"])
    assert written.shape[:2] == (40, 40)
    assert np.isfinite(written.get_fdata()).all()
    assert Image.open(payload["predictions"][0]["picture"]).size[0] > 80  # source and prediction side by side
    cv = tmp_path / "cv"
    folds = invoke(
        "tune", "cv", "--data", pairs, "--folds", "2", "--epochs", "1", "--config", config, "--out", cv, "--json"
    )
    assert {"psnr", "ssim"} <= set(folds["mean"])
    ensemble = invoke("evaluate", cv, "--json")
    assert ensemble["ensemble"]["members"] == 2
    assert np.isfinite(ensemble["psnr"])


def test_3d_volumes_from_nifti_folders_predict_on_the_input_grid(tmp_path):
    source, target = make_pairs(n=12, spatial_dims=3, size=16, seed=1)
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [10, -20, 5]
    for folder, images in (("source", source[:, :1]), ("target", target)):
        (tmp_path / "vols" / folder).mkdir(parents=True)
        for i, image in enumerate(images):
            nib.save(nib.Nifti1Image(image[0], affine), tmp_path / "vols" / folder / f"v{i:02d}.nii.gz")
    run = prepare_run_dir(tmp_path / "run3d", resume=False, force=False)
    fit(_config(tmp_path / "vols", model="unet_l1", epochs=1), run, quiet=True)
    file = tmp_path / "vols" / "source" / "v00.nii.gz"
    payload = invoke("predict", run, file, "--out-dir", tmp_path / "out", "--json")
    written = nib.load(payload["predictions"][0]["output"])
    assert written.shape == (16, 16, 16)
    np.testing.assert_allclose(written.affine, affine)
    assert (tmp_path / "out" / "v00_side_by_side.png").is_file()


def test_degraded_single_images_train_and_an_l1_model_refuses_a_gan_loss(tmp_path):
    from medattn.errors import ConfigError
    from medattn.tasks import get_task

    source, _ = make_pairs(n=16, size=24, seed=2)
    (tmp_path / "scans").mkdir()
    for i, image in enumerate(source[:, 0]):
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "scans" / f"s{i:02d}.png")
    run = prepare_run_dir(tmp_path / "denoise", resume=False, force=False)
    fit(_config(tmp_path / "scans", model="unet_l1", epochs=1, degrade="noise=0.1"), run, quiet=True)
    card = load_config(run / "config.yaml")
    assert card.data.degrade == "noise=0.1"
    report = invoke("data", "inspect", tmp_path / "scans", "--task", "translation", "--degrade", "noise=0.1", "--json")
    assert report["task"] == "translation"
    assert sum(report["splits"].values()) == 16
    config = _config(tmp_path / "scans", model="unet_l1", degrade="noise=0.1")
    config.train.loss = "hinge"
    with pytest.raises(ConfigError, match="L1 alone"):
        get_task("translation").check(config)
