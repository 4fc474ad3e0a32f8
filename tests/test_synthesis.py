"""Synthesis (`--task synthesis`, `medattn generate`, `--synthetic`): a short DDPM training on BreastMNIST whose
samples sit far closer to real images than noise does in a classifier's feature space (slow), the generate ->
train round trip in both layouts and evaluate's CLI path on a tiny phantom run, and the diffusion arithmetic."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medattn.errors import ConfigError, DataError, MedattnError
from medattn.registry import create_model
from medattn.tasks.synthesis.diffusion import cosine_alpha_bar, ddim_steps, noised, pack, sample
from medattn.tasks.synthesis.generate import share, to_stored
from run_cli import invoke

BREAST = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist" / "breastmnist.npz"
needs_breast = pytest.mark.skipif(not BREAST.is_file(), reason=f"real data not staged at {BREAST}")


def _config(tmp: Path, name: str, body: dict) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.fixture(scope="module")
def breast(tmp_path_factory):
    """A small DDPM and a small classifier, both on BreastMNIST at 16 px (28 px takes minutes of CPU)."""
    tmp = tmp_path_factory.mktemp("breast")
    data = {"path": str(BREAST), "size": [16, 16]}
    generator = {
        "task": "synthesis",
        "data": data,
        "model": {"name": "ddpm_unet", "options": {"widths": [16, 32], "depth": 1}},
        "train": {"epochs": 25, "threads": 1, "ema": 0.99},
    }
    classifier = {
        "data": data,
        "model": {"name": "attn_resnet", "options": {"widths": [16, 32, 64], "depths": [1, 1, 1]}},
        "train": {"epochs": 4, "threads": 1},
    }
    invoke("train", "--config", _config(tmp, "ddpm", generator), "--out", tmp / "ddpm", "--json")
    invoke("train", "--config", _config(tmp, "cls", classifier), "--out", tmp / "cls", "--json")
    return tmp


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One epoch of a tiny DDPM and of a tiny classifier on a 16-px phantom set: runs to generate from."""
    from medattn.data.phantom import save_medmnist_npz

    tmp = tmp_path_factory.mktemp("tiny")
    data = save_medmnist_npz(tmp / "phantom.npz", n_train=40, n_val=10, n_test=10, size=16, seed=0)
    generator = {
        "task": "synthesis",
        "data": {"path": str(data)},
        "model": {"name": "ddpm_unet", "options": {"widths": [8, 16], "depth": 1}},
        "train": {"epochs": 1, "threads": 1},
    }
    invoke("train", "--config", _config(tmp, "ddpm", generator), "--out", tmp / "ddpm", "--json")
    invoke("train", "--data", data, "--model", "cnn", "--epochs", 1, "--out", tmp / "cls", "--json")
    return tmp


@pytest.mark.slow
@needs_breast
def test_samples_are_far_closer_to_real_images_than_noise_is(breast):
    from medattn.tasks.synthesis.report import evaluate_run

    metrics = evaluate_run(breast / "ddpm", data=None, split="test", features=str(breast / "cls"), max_samples=300)
    fid = metrics["fid"]
    assert fid["samples_vs_real"] < 0.5 * fid["noise_vs_real"], fid
    assert fid["train_vs_real"] < fid["samples_vs_real"]  # real against real is the floor
    assert set(fid["per_class"]) == {"malignant", "normal, benign"}
    nearest = metrics["nearest"]
    assert nearest["samples"]["n"] == metrics["samples"] == 300
    assert len(nearest["closest_pairs"]) == 8
    assert Path(nearest["picture"]).is_file()
    # the generator has not copied its training images: samples are no closer to them than real held-out ones
    assert nearest["samples"]["median"] > 0.5 * nearest["held_out"]["median"]


def test_generated_images_round_trip_into_a_classifiers_training_split(tiny, tmp_path):
    folders = invoke("generate", tiny / "ddpm", "--n", 10, "--out", tmp_path / "gen", "--steps", 5, "--json")
    assert folders["per_class"] == {"0": 5, "1": 5}  # the phantom's classes are balanced
    assert len(list((tmp_path / "gen" / "1").glob("*.png"))) == 5
    one = invoke(
        "generate", tiny / "ddpm", "--n", 6, "--label", "1", "--out", tmp_path / "m.npz", "--steps", 5, "--json"
    )
    assert one["per_class"] == {"0": 0, "1": 6}
    with np.load(tmp_path / "m.npz") as archive:
        assert archive["train_images"].shape == (6, 16, 16)
        assert archive["train_images"].dtype == np.uint8  # the phantom's stored type
        assert archive["train_labels"].ravel().tolist() == [1] * 6
    from medattn.tasks import get_task

    with pytest.raises(MedattnError, match="already exists"):
        get_task("synthesis").generate(
            tiny / "ddpm", n=1, label=None, out=tmp_path / "m.npz", seed=0, steps=2, guidance=None, overwrite=False
        )

    data = tiny / "phantom.npz"
    for synthetic, ratio, expected in ((tmp_path / "m.npz", "0.1", [0, 4]), (tmp_path / "gen", "1", [5, 5])):
        out = tmp_path / f"cls-{ratio}"
        invoke(
            "train", "--data", data, "--epochs", 1, "--model", "cnn", "--out", out,
            "--synthetic", synthetic, "--synthetic-ratio", ratio, "--json",
        )  # fmt: skip
        card = yaml.safe_load((out / "model.json").read_text())
        mixed = card["training_data"]["synthetic"]
        assert mixed["class_counts"] == expected
        assert mixed["images"] == sum(expected)
        assert card["training_data"]["splits"] == {"train": 40, "val": 10, "test": 10}  # val and test stay real
    report = invoke("evaluate", tiny / "ddpm", "--features", tiny / "cls", "--json")  # the CLI path, quickly
    assert report["samples"] == 40
    assert report["fid"]["features"] == str(tiny / "cls")
    assert (tiny / "ddpm" / "report.html").is_file()


def test_options_that_mean_nothing_are_refused(tiny, tmp_path):
    from medattn.config import RunConfig

    with pytest.raises(ConfigError, match="needs data.synthetic"):
        RunConfig.from_dict({"data": {"path": "x.npz", "synthetic_ratio": 2.0}})
    from medattn.tasks import get_task

    with pytest.raises(ConfigError, match="does not generate images"):
        get_task("classification").generate(
            tiny / "cls", n=1, label=None, out=tmp_path / "x.npz", seed=0, steps=2, guidance=None, overwrite=False
        )
    with pytest.raises(ConfigError, match="not a class of this run"):
        get_task("synthesis").generate(
            tiny / "ddpm", n=1, label="cyst", out=tmp_path / "x.npz", seed=0, steps=2, guidance=None, overwrite=False
        )
    from medattn.data.raster import write_raster
    from medattn.tasks.classify.sources import open_source
    from medattn.tasks.classify.synthetic import synthetic_labels

    (tmp_path / "odd" / "cyst").mkdir(parents=True)
    write_raster(tmp_path / "odd" / "cyst" / "a.png", np.zeros((1, 16, 16), np.uint8))
    with pytest.raises(DataError, match="cyst"):
        synthetic_labels(open_source(tiny / "phantom.npz"), open_source(tmp_path / "odd"))
    from medattn.cli import evaluate

    options = {"data": None, "split": "test", "tta": False, "series": None, "slice_axis": None, "backend": "torch"}
    with pytest.raises(ConfigError, match="--features means nothing"):
        evaluate(tiny / "cls", features=str(tiny / "cls"), as_json=True, **options)


def test_the_denoiser_reads_step_and_class_from_its_packed_input():
    model = create_model("ddpm_unet", spatial_dims=2, in_channels=1, num_classes=3, options={"widths": [8, 16]})
    image = torch.randn(4, 1, 12, 12)
    step, label = torch.tensor([0, 5, 999, 10]), torch.tensor([0, 1, 3, 2])
    _, read_step, read_label = model.split_input(pack(image, step, label))
    assert read_step.tolist() == step.tolist()
    assert read_label.tolist() == label.tolist()
    with torch.no_grad():  # the class changes the prediction: the condition reaches the network
        for parameter in model.parameters():  # away from the zero init, which leaves the embedding unseen
            parameter.normal_(0, 0.2)
        a = model(pack(image, step, torch.ones(4, dtype=torch.long)))
        b = model(pack(image, step, torch.full((4,), 2)))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="takes 1 or 3 channels"):
        model(torch.randn(1, 2, 12, 12))


def test_schedule_noising_and_the_inverse_of_the_intensity_recipe():
    alpha_bar = cosine_alpha_bar()
    assert alpha_bar[0] > 0.999
    assert alpha_bar[-1] < 1e-4
    assert bool((alpha_bar.diff() < 0).all())
    x0, noise = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert torch.allclose(noised(x0, torch.tensor([0, 0]), noise, alpha_bar), alpha_bar[0].sqrt().float() * x0)
    assert ddim_steps(50) == sorted(ddim_steps(50), reverse=True)
    assert (ddim_steps(50)[0], ddim_steps(50)[-1], len(ddim_steps(50))) == (999, 0, 50)
    assert share(10, [147, 399]) == [3, 7]
    assert sum(share(1000, [1, 1, 1])) == 1000
    from medattn.data.preprocess import Intensity, to_unit

    stored = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    intensity = Intensity(mode="scale", scale=1 / 255, mean=0.3, std=0.2)
    standardised = (torch.from_numpy(to_unit(stored, intensity)) - 0.3) / 0.2
    assert np.array_equal(to_stored(standardised, intensity), stored)  # generated pixels land on the stored values


class _Oracle(torch.nn.Module):
    """The exact velocity for a data set of one image: what a perfectly trained denoiser predicts."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = torch.nn.Parameter(image, requires_grad=False)

    def forward(self, packed):
        x, step = packed[:, :1], packed[:, 1, 0, 0].round().long()
        abar = cosine_alpha_bar()[step].float().reshape(-1, 1, 1, 1)
        eps = (x - abar.sqrt() * self.image) / (1 - abar).sqrt()
        return abar.sqrt() * eps - (1 - abar).sqrt() * self.image


def test_ddim_with_an_exact_denoiser_lands_on_the_data():
    image = torch.linspace(-1, 2, 64).reshape(1, 1, 8, 8)
    for guidance in (1.0, 2.0):
        made = sample(
            _Oracle(image),
            torch.zeros(3, dtype=torch.long),
            shape=(1, 8, 8),
            steps=10,
            guidance=guidance,
            clip=(-5.0, 5.0),
            generator=torch.Generator().manual_seed(0),
        )
        torch.testing.assert_close(made, image.expand(3, 1, 8, 8), atol=1e-4, rtol=0)
