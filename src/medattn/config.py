"""Typed run configuration, saved as config.yaml beside every run and read back strictly.

Unknown keys are errors (a typo must not silently fall back to a default); nothing in a config is
evaluated as code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from medattn.errors import ConfigError

# Automatic choices that belong to a task (its default model, loss, batch, epochs) live in its folder under
# tasks/: a field left at None here means "the task's default", and the resolved run config records the value
# used. A field another task uses, set for a task that does not, is an error naming the field (tasks/base.py).
LABEL_TYPES = ("binary", "multiclass", "multilabel", "ordinal")
SCHEDULES = ("onecycle", "cosine")
SAMPLERS = ("shuffle", "balanced")
BOX_FORMATS = ("xyzxyz", "cccwhd")  # MONAI detection JSON: corners, or centre and size
CLINICAL_FUSIONS = ("concat", "film")
FUSIONS = ("early", "late", "hemis", "cross_attention")
BOX_SPACES = ("voxel", "world", "world_lps")  # voxel indices, RAS+ mm (nibabel), LPS mm (ITK, DICOM)
HEADS_HELP = (
    "heads trained together on one shared encoder, e.g. segmentation,classification:grade,regression:age: at most "
    "one segmentation head (the masks) and any classification:COLUMN or regression:COLUMN heads naming manifest or "
    "CSV columns (an empty cell leaves that image out of that head's loss); classification:foreground is derived "
    "from the masks (1 when an image's mask has any foreground: 'lesion on this slice')"
)
HEAD_WEIGHTS_HELP = (
    "--heads: uncertainty (learned per head, the default) or fixed weights in the heads' order, e.g. 1,0.5"
)


def default_augment() -> list[dict[str, Any]]:
    """Geometry and intensity jitter that suits most radiology images; flips only left-right."""
    return [
        {"name": "flip", "prob": 0.5, "axes": [-1]},
        {"name": "affine", "prob": 0.8, "rotate_deg": 10.0, "scale": 0.1, "translate": 0.05},
    ]


@dataclass
class DataConfig:
    path: str = ""
    labels: str | None = None  # classification: binary | multiclass | multilabel | ordinal (None: from the labels)
    targets: list[str] | None = None  # regression: the columns (CSV) to predict; None: the task's default
    size: list[int] | None = None  # whole-image input size per spatial axis; None keeps the source size
    modality: str = "auto"  # auto | ct | mr | xray | rgb | minmax (see data/preprocess.py)
    window: list[float] | None = None  # CT window [center, width] in HU
    val_fraction: float = 0.15  # used only when the source has no validation split
    test_fraction: float = 0.15  # used only when the source has no test split
    class_names: list[str] | None = None
    # a list of operations, or a preset: none | default | xray | ct | mr | ultrasound | rgb | auto (data/presets.py)
    augment: str | list[dict[str, Any]] = field(default_factory=default_augment)
    # patch-trained tasks (segmentation): the training patch per spatial axis (None = from the median image
    # shape), and the voxel spacing in mm to resample to: auto (the training median in 3D, none in 2D), none,
    # median, or one value per axis (None = auto). Images are resampled linearly, masks by nearest neighbour.
    patch: list[int] | None = None
    spacing: str | list[float] | None = None
    # a 2D model given a volume reads it slice by slice along this axis of the stored array (0, 1 or 2); None:
    # the axis of coarsest spacing (engine/inputs.py). Recorded in the card; `--slice-axis` overrides it later.
    slice_axis: int | None = None
    # DICOM folders holding several series: the one to read, by SeriesInstanceUID or SeriesDescription (e.g.
    # "T2 FLAIR" picks that sequence in every study folder); evaluate and predict default to it too
    series: str | None = None
    # box data: bad boxes (no area, outside the image, an unknown class) are dropped with a count instead of
    # refused; MONAI detection JSON states its boxes' format (xyzxyz | cccwhd) and space (voxel | world | world_lps)
    drop_bad_boxes: bool = False
    box_format: str | None = None
    box_space: str | None = None
    # image-to-image translation: the channels of one multi-channel set that are the input and the output (e.g.
    # [0, 2] and [1]); `degrade` builds pairs from single images ("noise=0.05": Gaussian noise of that share of
    # the intensity range; "downsample=2": a block-averaged copy brought back to the grid); `target_range` is the
    # data range PSNR and SSIM use (None: the training targets' max - min as stored)
    source_channels: list[int] | None = None
    target_channels: list[int] | None = None
    degrade: str | None = None
    target_range: float | None = None
    # bag-labelled data (multiple instance learning): the CSV column whose equal values make one bag (a patient's
    # slices), each bag with one label
    bag: str | None = None
    # clinical variables beside the images: a per-patient CSV joined on patient_id, the columns to use (name, or
    # name:numeric / name:categorical), and how they join the image features: concat | film (None: concat)
    clinical: str | None = None
    clinical_columns: list[str] | None = None
    clinical_fusion: str | None = None
    # names of the input modalities (MR sequences, CT phases): the image's channels split evenly among them, in
    # order; the model is fused over them (model.fusion) and evaluate / predict may leave some out (--missing)
    modalities: list[str] | None = None
    # classification: generated images (`medattn generate`) mixed into the training split only, and how many per
    # real training image (None: 1.0 when synthetic is set)
    synthetic: str | None = None
    synthetic_ratio: float | None = None
    # several heads on one shared encoder, trained together (tasks/multitask/): HEADS_HELP says the syntax
    heads: list[str] | None = None


@dataclass
class ModelConfig:
    name: str | None = None  # None: the task's default model (and its default options for the data's dims)
    options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # a finished run whose weights (all but the head) start this one
    fusion: str | None = None  # with data.modalities: early | late | hemis | cross_attention (None: early)


@dataclass
class TrainConfig:
    epochs: int = 0  # 0 = auto: the task sizes it from the training set (tasks/<task>/)
    batch_size: int | None = None  # None: the task's default for the data's dims
    lr: float = 3e-3
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    grad_clip: float = 2.0
    loss: str | None = None  # None: the task's default (tasks/<task>/ lists its losses)
    focal_gamma: float = 2.0
    label_smoothing: float | None = None  # classification (None: 0.1)
    # the best epoch is chosen on validation by this metric, never on test (None: the task's default)
    select_metric: str | None = None
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    time_limit: float = 0.0  # minutes of training (validation included); the epochs that fit; 0 = off
    sampler: str | None = None  # classification: shuffle | balanced (each class drawn equally often)
    threshold: str | None = None  # binary: a number, "youden", or "sensitivity=0.9" (tuned on val); None: 0.5
    amp: bool = True  # mixed precision where the device supports it (CUDA)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int = 0  # CPU threads; 0 = all cores
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; 0 = off (with both on, each batch picks one)
    ema: float | None = None  # moving average of the weights (evaluated and saved); 0 = off; None: the task's
    foreground_fraction: float | None = None  # segmentation: share of patches centred on a label (None: 0.33)
    teacher: str | None = None  # a finished run whose softened outputs the model also learns (engine/distill.py)
    distill_temperature: float = 4.0  # T: the teacher's and student's logits are divided by it
    distill_alpha: float = 0.5  # the teacher's share of the loss; the labels have the rest
    # with data.modalities: the chance that each modality of a training image is left out (at least one kept);
    # None: DEFAULT_MODALITY_DROPOUT with several named modalities, so a run keeps working when one is missing
    modality_dropout: float | None = None
    # with data.heads: how the heads' losses add up: "uncertainty" (learned, Kendall et al. 2018) or fixed weights
    # "1,0.5" in the order of data.heads (None: uncertainty)
    head_weights: str | None = None
    # with data.clinical: the chance that a training image's whole clinical vector is replaced by the all-unknown
    # one, so the model keeps an image-only path (None: the task's default)
    clinical_dropout: float | None = None


@dataclass
class RunConfig:
    task: str | None = None  # a registered task (medattn.tasks); None: recognised from the data
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        """Checks that need no task; each task checks its own fields when it resolves the config."""
        checks = [
            (self.data.labels, (None, *LABEL_TYPES), "data.labels"),
            (self.train.schedule, SCHEDULES, "train.schedule"),
            (self.train.sampler, (None, *SAMPLERS), "train.sampler"),
            (self.data.box_format, (None, *BOX_FORMATS), "data.box_format"),
            (self.data.box_space, (None, *BOX_SPACES), "data.box_space"),
            (self.data.clinical_fusion, (None, *CLINICAL_FUSIONS), "data.clinical_fusion"),
            (self.model.fusion, (None, *FUSIONS), "model.fusion"),
        ]
        for value, allowed, key in checks:
            if value not in allowed:
                raise ConfigError(f"{key}: {value!r} is not one of {', '.join(str(a) for a in allowed if a)}")
        if self.train.epochs < 0 or (self.train.batch_size is not None and self.train.batch_size < 1):
            raise ConfigError("train.epochs must be 0 (auto) or more, train.batch_size at least 1")
        if not 0 < self.train.lr < 10:
            raise ConfigError(f"train.lr must be in (0, 10), got {self.train.lr}")
        if self.train.threshold is not None:
            parse_threshold(self.train.threshold)
        from medattn.data.presets import check_augment

        check_augment(self.data.augment)
        if self.train.mixup < 0 or self.train.cutmix < 0:
            raise ConfigError("train.mixup and train.cutmix are Beta alphas: 0 (off) or positive")
        if not math.isfinite(self.train.time_limit) or self.train.time_limit < 0:
            raise ConfigError(
                f"train.time_limit is minutes of training: 0 (none) or positive, got {self.train.time_limit}"
            )
        if self.train.ema is not None and not 0 <= self.train.ema < 1:
            raise ConfigError(f"train.ema must be in [0, 1), got {self.train.ema}")
        check_slice_axis(self.data.slice_axis, "data.slice_axis")
        _check_modalities(self)
        if (self.data.clinical is None) != (not self.data.clinical_columns):
            raise ConfigError("data.clinical (--clinical) and data.clinical_columns (--clinical-columns) go together")
        if self.train.clinical_dropout is not None:
            if self.data.clinical is None:
                raise ConfigError("train.clinical_dropout (--clinical-dropout) needs data.clinical (--clinical)")
            if not 0 <= self.train.clinical_dropout < 1:
                raise ConfigError(f"train.clinical_dropout must be in [0, 1), got {self.train.clinical_dropout}")
        from medattn.engine.distill import check_distillation

        check_distillation(self)
        _check_patch_fields(self)
        _check_translation_fields(self)
        _check_task_names(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> RunConfig:
        return _build(cls, _upgrade(raw), source).validate()


def _upgrade(raw: Any) -> Any:
    """A config.yaml written before tasks were separate from label types: `data.task` held both."""
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict) or "task" not in data:
        return raw
    from medattn.tasks import legacy_task

    raw = {**raw, "data": dict(data)}
    task, labels = legacy_task(raw["data"].pop("task"))
    if task is not None:
        raw.setdefault("task", task)
    if labels is not None:
        raw["data"].setdefault("labels", labels)
    return raw


def _check_task_names(config: RunConfig) -> None:
    """The task, the loss and the best-epoch metric are names some registered task knows (each task checks its
    own when it resolves the config)."""
    from medattn.registry import TASKS
    from medattn.tasks import all_tasks

    if config.task is not None:
        TASKS.get(config.task)  # an unknown task fails with the closest names
    tasks = all_tasks()
    for key, value, known in (
        ("train.loss", config.train.loss, sorted({loss for t in tasks for loss in t.losses})),
        ("train.select_metric", config.train.select_metric, sorted({m for t in tasks for m in t.select_metrics})),
    ):
        if value is not None and value not in known:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(known)}")


def _check_modalities(config: RunConfig) -> None:
    names = config.data.modalities
    if names is not None and (not names or len(set(names)) != len(names) or not all(names)):
        raise ConfigError(f"data.modalities {names!r}: expected distinct names, e.g. [t1, flair, t1c]")
    if names is None and (config.model.fusion is not None or config.train.modality_dropout):
        raise ConfigError("model.fusion (--fusion) and train.modality_dropout need data.modalities (--modalities)")
    if config.train.modality_dropout is not None and not 0 <= config.train.modality_dropout < 1:
        raise ConfigError(f"train.modality_dropout must be in [0, 1), got {config.train.modality_dropout}")


def _check_patch_fields(config: RunConfig) -> None:
    patch, spacing = config.data.patch, config.data.spacing
    if patch is not None and (not patch or not all(isinstance(p, int) and p >= 4 for p in patch)):
        raise ConfigError(f"data.patch {patch!r}: expected integers of at least 4, one per axis (or one for all)")
    if spacing is None:
        pass
    elif isinstance(spacing, str):
        if spacing not in ("auto", "none", "median"):
            raise ConfigError(f"data.spacing {spacing!r}: expected auto, none, median or millimetres per axis")
    elif not spacing or not all(isinstance(s, int | float) and s > 0 for s in spacing):
        raise ConfigError(f"data.spacing {spacing!r}: expected positive millimetres per axis, e.g. [1.0, 1.0, 1.0]")
    ratio = config.data.synthetic_ratio
    if ratio is not None and not ratio > 0:
        raise ConfigError(f"data.synthetic_ratio must be positive (synthetic images per real one), got {ratio}")
    if ratio is not None and not config.data.synthetic:
        raise ConfigError("data.synthetic_ratio (--synthetic-ratio) needs data.synthetic (--synthetic PATH)")
    fraction = config.train.foreground_fraction
    if fraction is not None and not 0 <= fraction <= 1:
        raise ConfigError(f"train.foreground_fraction must be in [0, 1], got {config.train.foreground_fraction}")


def _check_translation_fields(config: RunConfig) -> None:
    data = config.data
    for key, channels in (
        ("data.source_channels", data.source_channels),
        ("data.target_channels", data.target_channels),
    ):
        if channels is not None and (
            not channels or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in channels)
        ):
            raise ConfigError(f"{key} {channels!r}: expected channel indices (0, 1, ...), e.g. [0, 2]")
    if (data.source_channels is None) != (data.target_channels is None):
        raise ConfigError(
            "data.source_channels and data.target_channels go together (--source-channels 0,2 --target-channels 1)"
        )
    if data.degrade is not None:
        from medattn.data.degrade import parse_degrade

        parse_degrade(data.degrade)
    if data.target_range is not None and not data.target_range > 0:
        raise ConfigError(f"data.target_range must be positive, got {data.target_range}")


def check_slice_axis(axis, where: str) -> None:
    if axis is not None and (isinstance(axis, bool) or axis not in (0, 1, 2)):
        raise ConfigError(f"{where} {axis!r}: expected 0, 1 or 2 (an axis of the stored volume), or none for auto")


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
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config: {error}") from error
    try:
        return RunConfig.from_dict(raw, source=str(path))
    except ConfigError as error:
        if str(path) in str(error):
            raise
        raise ConfigError(f"{path}: {error}") from error
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        # A list where a number belongs, a mapping where a name belongs: the checks compare and look up values.
        raise ConfigError(f"{path}: a value has the wrong type ({type(error).__name__}: {error})") from error
