"""Run configs: strict YAML round trip, unknown keys and bad values rejected with the key named."""

import pytest

from medattn.config import RunConfig, load_config, save_config
from medattn.errors import ConfigError


def test_round_trip_keeps_every_field(tmp_path):
    config = RunConfig()
    config.data.path = "x.npz"
    config.data.size = [32, 32]
    config.model.options = {"widths": [8, 16], "attention": "cbam"}
    config.train.epochs = 3
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("train: {epoch: 3}", "epoch"),
        ("modle: {name: cnn}", "modle"),
        ("train: {schedule: linear}", "train.schedule"),
        ("train: {loss: wasserstein}", "train.loss"),
        ("data: {labels: regression}", "data.labels"),
        ("train: [1, 2]", "expected a mapping"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, named):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_config(path)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("train: {epochs: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_yaml_is_never_evaluated(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("train: !!python/object/apply:os.system ['echo hacked']")
    with pytest.raises(ConfigError):
        load_config(path)


def test_the_readme_example_config_is_valid(tmp_path):
    import re
    from pathlib import Path

    from medattn.data.augment import Augment

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "run.yaml").write_text(block)
    config = load_config(tmp_path / "run.yaml")
    assert config.train.loss == "focal"
    assert config.model.options["attention"] == "cbam"
    Augment(config.data.augment, spatial_dims=3, seed=0)  # every augmentation entry builds


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-3\n  weight_decay: 0\n  epochs: 3\n")
    config = load_config(path)
    assert config.train.lr == pytest.approx(1e-3)
    assert isinstance(config.train.weight_decay, float)
    path.write_text("train:\n  epochs: three\n")
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_config(path)
    path.write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        load_config(path)
