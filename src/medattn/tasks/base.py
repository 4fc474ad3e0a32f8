"""The task protocol: what a task (classification, segmentation, regression, ...) gives the one engine.

A task is a folder under tasks/ with a class derived from `Task`, registered in `medattn.registry.TASKS`.
The engine (engine/trainer.py), the command line and tune/ call only the methods below; nothing outside a
task's folder branches on its name. A task owns:

- recognising its data (`recognises`) and opening it with every split carved (`open`);
- the data the loop trains on (`load` -> `TaskData`), and its training batches (`TrainSet`);
- its defaults and checks (`resolve`): the model, loss, batch size, epochs, best-epoch metric, and which
  optional config fields mean something to it (`fields`): any other optional field set is an error;
- the loss, validation scores and the score the best epoch is chosen on;
- its section of the model card, its evaluation, prediction, inspection and printing;
- its cross-validation units (`fold_pool`, `fold_source`, `score_fold`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from medattn.config import RunConfig
from medattn.errors import ConfigError

# Optional config fields that only some tasks use, with the value that means "not set". A task lists the ones
# it uses in `Task.fields`; a field outside that list, set to anything else, is refused by `check_fields`.
OPTIONAL_FIELDS = {
    "data.labels": None,
    "data.targets": None,
    "data.size": None,
    "data.patch": None,
    "data.spacing": None,
    "train.sampler": None,
    "train.threshold": None,
    "train.label_smoothing": None,
    "train.foreground_fraction": None,
    "train.mixup": 0.0,
    "train.cutmix": 0.0,
    "data.drop_bad_boxes": False,
    "data.box_format": None,
    "data.box_space": None,
    "data.source_channels": None,
    "data.target_channels": None,
    "data.degrade": None,
    "data.target_range": None,
    "data.bag": None,
    "data.clinical": None,
    "data.clinical_columns": None,
    "data.clinical_fusion": None,
    "data.modalities": None,
    "model.fusion": None,
    "train.modality_dropout": None,
    "train.clinical_dropout": None,
    "data.synthetic": None,
    "data.synthetic_ratio": None,
    "data.heads": None,
    "train.head_weights": None,
}
# Values that also mean "not set": what runs saved before the field's unset value changed (0.0 meant no modality
# dropout before None came to mean "the default"), so their config.yaml still loads for every task.
ALSO_UNSET = {"train.modality_dropout": (0.0,)}
# The command-line flag of each optional field, for error messages.
FLAGS = {
    "data.labels": "--labels",
    "data.targets": "--targets",
    "data.size": "--size",
    "data.patch": "--patch",
    "train.sampler": "--sampler",
    "train.threshold": "--threshold",
    "data.drop_bad_boxes": "--drop-bad-boxes",
    "data.box_format": "--box-format",
    "data.box_space": "--box-space",
    "data.source_channels": "--source-channels",
    "data.target_channels": "--target-channels",
    "data.degrade": "--degrade",
    "data.target_range": "--range",
    "data.bag": "--bag",
    "data.clinical": "--clinical",
    "data.clinical_columns": "--clinical-columns",
    "data.clinical_fusion": "--clinical-fusion",
    "data.modalities": "--modalities",
    "model.fusion": "--fusion",
    "train.modality_dropout": "--modality-dropout",
    "train.clinical_dropout": "--clinical-dropout",
    "data.synthetic": "--synthetic",
    "data.synthetic_ratio": "--synthetic-ratio",
    "data.heads": "--heads",
    "train.head_weights": "--head-weights",
}


class TrainSet(Protocol):
    """One epoch's training items and their batches, as the engine draws them.

    `order(generator)` gives the items of one epoch (a 1-D int64 tensor; the same on every process under
    torchrun, so it must draw only from `generator`); `batch(items)` gives (x, target) with augmentation
    applied. `generators` are saved in the checkpoint; `rank_generators` are reseeded per process and epoch.
    """

    generators: dict[str, Any]
    rank_generators: list[Any]

    def __len__(self) -> int: ...

    def configure(self, config: RunConfig) -> None:
        """Build the augmentation (and the task's sampling) from the resolved config, before any epoch."""

    def order(self, generator) -> Any: ...

    def batch(self, items) -> tuple[Any, Any]: ...


@dataclass
class TaskData:
    """What a task loaded for training: enough for the engine to build the model and report."""

    source: Any  # the task's own source object (splits, path, kind)
    spatial_dims: int
    in_channels: int
    num_outputs: int
    n_train: int  # training images or cases
    modality: str = "auto"
    channel_names: list[str] | None = None  # as the data names its channels (MSD `modality`, nnU-Net file suffixes)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # the task's own (tensors, plans, ...)
    # set by the trainer: the run directory and the epoch being validated (from 0), for tasks that write what an
    # epoch looks like (translation's grid of validation images)
    run: Path | None = None
    epoch: int = 0


@dataclass
class Pool:
    """Cross-validation units: the train and validation splits pooled, with what folds respect."""

    n: int
    strata: np.ndarray | None  # (n,) class to stratify on, or None
    groups: np.ndarray | None  # (n,) patient ids, or None
    items: Any = None  # the task's pooled split, handed back to fold_source
    unit: str = "images"


class Task(ABC):
    """Base class: the shared behaviour, and the methods every task must give."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    layouts: ClassVar[str] = ""  # the data layouts it reads, for `medattn tasks`
    model_tag: ClassVar[str] = ""  # models registered under this tag fit the task's output
    fields: ClassVar[frozenset[str]] = frozenset()  # optional config fields the task uses
    losses: ClassVar[tuple[str, ...]] = ()
    select_metrics: ClassVar[tuple[str, ...]] = ()
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"loss"})
    item: ClassVar[str] = "images"  # what a training step consumes: images, patches
    dense: ClassVar[bool] = False  # the model's output has the input's grid (B, K, *S), not (B, K)
    fold_metric: ClassVar[str] = ""  # the headline of a cross-validation
    summary_keys: ClassVar[tuple[str, ...]] = ()
    predict_options: ClassVar[frozenset[str]] = frozenset()  # of tta, out_dir, overwrite
    evaluate_options: ClassVar[frozenset[str]] = frozenset()  # keyword options its `evaluate` takes (features)
    has_demo: ClassVar[bool] = False  # `demo` writes phantom data and returns a config
    explains: ClassVar[bool] = True  # `medattn explain`'s maps apply (a class score, an output or a region)
    recognition_order: ClassVar[int] = 50  # lower asks first: the most specific data layouts before catch-alls
    legacy_names: ClassVar[tuple[str, ...]] = ()  # label types older configs and cards gave as the task
    # optional fields without which the task cannot read its data: recognising data, a task is only asked when
    # they are set (a CSV path,label is a bag set with --bag, plain images without it)
    requires: ClassVar[frozenset[str]] = frozenset()

    # -- data -------------------------------------------------------------------------------------------
    @abstractmethod
    def recognises(self, path: Path) -> bool:
        """Whether `path` is data in one of this task's layouts (asked in `recognition_order`)."""

    @abstractmethod
    def open(self, config: RunConfig) -> Any:
        """The source of config.data.path with every split carved (seeded), as training and evaluate see it."""

    @abstractmethod
    def load(self, config: RunConfig, *, source: Any = None) -> TaskData:
        """Training and validation data in memory; `source`, when given, is already split (a CV fold)."""

    # -- configuration ------------------------------------------------------------------------------------
    @abstractmethod
    def default_model(self, spatial_dims: int) -> tuple[str, dict]:
        """(registered model name, its options) used when the config names no model."""

    @abstractmethod
    def defaults(self, config: RunConfig, data: TaskData) -> dict[str, Any]:
        """{"train.batch_size": ..., "train.loss": ..., ...}: values for fields left at None."""

    @abstractmethod
    def auto_epochs(self, config: RunConfig, data: TaskData, train_set: TrainSet) -> int:
        """The epochs `train.epochs: 0` means for this data, sized from the training set."""

    def resolve(self, config: RunConfig, data: TaskData, train_set: TrainSet) -> RunConfig:
        """A copy with every automatic choice concrete (saved as config.yaml, so a resume is exact).

        A value the user gave is never replaced; a field the task does not use is refused (`check_fields`).
        """
        import medattn.models  # noqa: F401  (registers the models)
        from medattn.data.presets import resolve_augment
        from medattn.registry import MODELS

        config = RunConfig.from_dict(config.to_dict())
        config.task = self.name
        self.check(config)
        if config.model.name is None:  # the task's default model, with its default options unless some are given
            name, options = self.default_model(data.spatial_dims)
            config.model.name, config.model.options = name, config.model.options or options
        if self.model_tag not in MODELS.get(config.model.name).tasks:
            names = ", ".join(MODELS.names(self.model_tag))
            raise ConfigError(f"model {config.model.name!r} does not fit {self.name}; models that do: {names}")
        for key, value in self.defaults(config, data).items():
            section, name = key.split(".")
            if getattr(getattr(config, section), name) is None:
                setattr(getattr(config, section), name, value)
        if config.data.modalities:  # the model fused over the named modalities (models/fusion.py)
            from medattn.models.fusion import fusion_options

            config.model.options = fusion_options(config, data.in_channels)
        modality = config.data.modality if config.data.modality != "auto" else data.modality
        config.data.augment = resolve_augment(config.data.augment, spatial_dims=data.spatial_dims, modality=modality)
        if config.train.epochs == 0:
            config.train.epochs = self.auto_epochs(config, data, train_set)
        return config

    def check(self, config: RunConfig) -> None:
        """Before any data is read: the options the user set mean something to this task, and its names are its."""
        check_fields(config, self)
        if config.train.loss is not None and config.train.loss not in self.losses:
            raise ConfigError(f"train.loss {config.train.loss!r} is not a {self.name} loss ({', '.join(self.losses)})")
        metric = config.train.select_metric
        if metric is not None and metric not in self.select_metrics:
            raise ConfigError(
                f"train.select_metric {metric!r}: {self.name} chooses the best epoch on one of "
                f"{', '.join(self.select_metrics)}"
            )

    # -- training -----------------------------------------------------------------------------------------
    @abstractmethod
    def train_set(self, config: RunConfig, data: TaskData) -> TrainSet:
        """The training items and their batches (see `TrainSet`)."""

    @abstractmethod
    def loss(self, config: RunConfig, data: TaskData):
        """loss(model, output, target) -> scalar tensor."""

    def distillation(self, data: TaskData) -> str | None:
        """How a teacher's outputs teach a student (engine/distill.py): "softmax" over axis 1 (the classes, per
        pixel for dense outputs), "sigmoid" per output, or None: this task's outputs are not probabilities."""
        return None

    @abstractmethod
    def validate(self, model, data: TaskData, *, loss_fn, device, amp: bool) -> dict[str, float]:
        """Scalar scores on the validation split; must hold every metric in `select_metrics`."""

    def selection_score(self, scores: dict, metric: str) -> float:
        """Higher is better; an undefined metric (an AUC on one class) falls back to the loss when there is one."""
        value = scores.get(metric, math.nan)
        if not math.isfinite(value) and metric != "loss" and "loss" in scores:
            metric, value = "loss", scores["loss"]
        return -value if metric in self.lower_is_better else value

    def history_scores(self, scores: dict) -> dict[str, float]:
        """The validation scores kept per epoch in history.csv (prefixed val_)."""
        return {k: v for k, v in scores.items() if isinstance(v, int | float)}

    def progress_text(self, scores: dict, best: dict) -> str:
        metric = self.fold_metric
        best_value = best["scores"].get(metric, math.nan)
        return f"val {metric} {scores.get(metric, math.nan):.3f} (best {best_value:.3f})"

    def output_shape(self, model, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of model(x) for an input x of `x_shape` (B, C, *S): (B, K) for a vector per image, (B, K, *S)
        for dense tasks."""
        batch, spatial = x_shape[0], tuple(x_shape[2:])
        return (batch, model.num_classes, *spatial) if self.dense else (batch, model.num_classes)

    @abstractmethod
    def card(self, config: RunConfig, data: TaskData, *, model, device) -> dict:
        """The task's part of model.json: class names, the input specification, training data summary."""

    def summary(self, result: dict) -> str:
        """One line for the end of `train`."""
        metric = self.fold_metric
        return f"best epoch {result['best_epoch']}/{result['epochs_run']}: val {metric} {result['val'].get(metric)}"

    # -- using a finished run ------------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, run: Path, *, data: str | None, split: str, tta: bool) -> dict:
        """Metrics of a run (or fold ensemble) on a split, also recorded in the run's metrics.json."""

    @abstractmethod
    def predict(
        self, run: Path, files: list[Path], *, tta: bool, out_dir: Path | None, overwrite: bool, series: str | None
    ) -> dict:
        """Predict on image files or DICOM series folders (`series` picks one series in a folder of several)."""

    def generate(
        self,
        run: Path,
        *,
        n: int,
        label: str | None,
        out: Path,
        seed: int,
        steps: int | None,
        guidance: float | None,
        overwrite: bool,
    ) -> dict:
        """`medattn generate`: `n` new images (of class `label`, or of every class in the training proportions)
        written to `out` in the training data's layout, for tasks whose runs make images."""
        raise ConfigError(f"{run} is a {self.name} run: it does not generate images")

    @abstractmethod
    def print_report(self, metrics: dict) -> None:
        """`evaluate`'s metrics for a person (the --json output is the dict itself)."""

    @abstractmethod
    def print_predictions(self, payload: dict) -> None:
        """`predict`'s results for a person, a line or more per file."""

    @abstractmethod
    def inspect(self, config: RunConfig, *, progress=iter) -> dict:
        """`data inspect` of config.data.path (read with the config's data options): counts, sizes, spacing,
        intensities and leakage checks of a data set."""

    @abstractmethod
    def print_inspect(self, report: dict) -> None:
        """`data inspect`'s report for a person."""

    # -- explanation (explain/) ----------------------------------------------------------------------------
    @abstractmethod
    def explain_target(self, card: dict, output: Any, *, target: str | None, mask: Any = None) -> Any:
        """The `explain.target.Target` an explanation of one input explains, from the model's output (1, K) or
        (1, K, *S) (detached logits): `target` names a class or output (default: the prediction); `mask` (*S), on
        the model's input grid, is the region a dense output is summed over (default: the predicted region)."""

    @abstractmethod
    def explain_cases(self, run: Path, *, data: str | None, split: str) -> Iterator[Any]:
        """`explain.case.ExplainCase` for each image of a split (the run's own data split as training split it),
        with its lesion mask where the data has one."""

    @abstractmethod
    def report_sections(self, run: Path, *, data: str | None, split: str) -> list[Any]:
        """The task's evaluation in `medattn report` (`explain.report.page.Section`s with embedded plots)."""

    # -- cross-validation -------------------------------------------------------------------------------
    @abstractmethod
    def fold_pool(self, source: Any) -> Pool:
        """The train and val splits pooled into cross-validation units, with strata and patient groups."""

    @abstractmethod
    def fold_source(self, source: Any, pool: Pool, train: np.ndarray, held_out: np.ndarray, note: str) -> Any:
        """The source as one fold's run sees it: train from `train`, val from `held_out`, test as it was."""

    @abstractmethod
    def score_fold(self, run: Path, source: Any) -> dict:
        """Scalar metrics of a fold's run on its held-out fold (the source's val split)."""

    @abstractmethod
    def spatial_dims(self, config: RunConfig) -> int:
        """2 or 3, from the first training image of config.data.path."""

    # -- demo -------------------------------------------------------------------------------------------
    def demo(self, out: Path, *, say) -> RunConfig:
        """Write phantom data under `out` and return the config the demo trains (tasks with has_demo)."""
        raise ConfigError(f"{self.name} has no demo (has_demo is False)")

    def demo_files(self, config: RunConfig) -> list[Path]:
        """Files the demo predicts on after training."""
        return []


def requirements_met(config: RunConfig | None, task: Task) -> bool:
    """Every field in `task.requires` is set in `config` (no config: only tasks that require nothing)."""
    if config is None:
        return not task.requires
    return all(getattr(getattr(config, k.split(".")[0]), k.split(".")[1]) != OPTIONAL_FIELDS[k] for k in task.requires)


def check_fields(config: RunConfig, task: Task) -> None:
    """An optional field set for a task that does not use it is an error naming the field (and its flag)."""
    for key, unset in OPTIONAL_FIELDS.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if key not in task.fields and value != unset and value not in ALSO_UNSET.get(key, ()):
            flag = f" ({FLAGS[key]})" if key in FLAGS else ""
            users = ", ".join(t.name for t in _tasks_using(key)) or "no task"
            raise ConfigError(f"{key}{flag} = {value!r} means nothing to {task.name}; it is used by {users}")


def _tasks_using(key: str) -> Iterable[Task]:
    from medattn.tasks import all_tasks

    return [t for t in all_tasks() if key in t.fields]


def listed_fold_source(source: Any, pool: Pool, train: np.ndarray, held_out: np.ndarray, note: str) -> Any:
    """`Task.fold_source` for a source whose splits are lists of items (cases, annotated images): train from the
    pooled items at `train`, val from those at `held_out`, test as it was."""
    from dataclasses import replace

    splits = {"train": [pool.items[i] for i in train], "val": [pool.items[i] for i in held_out]}
    if "test" in source.splits:
        splits["test"] = source.splits["test"]
    return replace(source, splits=splits, notes=[*source.notes, note])


def auto_epochs(total: int, per_epoch: int, *, low: int, high: int) -> int:
    """Epochs that show the model about `total` items, `per_epoch` at a time, within [low, high]."""
    return min(high, max(low, math.ceil(total / max(per_epoch, 1))))


AUTO_MODALITIES = "auto"
# Whole modalities left out of training images when several are named and --modality-dropout is not given: on
# lgg_mri (benchmarks/multimodal.py) early fusion trained with 0.3 kept its Dice per patient without the
# contrast sequence (0.755 against 0.748 with all three) where training without dropout lost a fifth of it
# (0.527 against 0.636), and scored higher with all three present too.
DEFAULT_MODALITY_DROPOUT = 0.3


def resolve_modalities(config: RunConfig, data: TaskData) -> None:
    """Before the training set is built: `--modalities auto` named as the data names its channels (an MSD
    dataset.json's `modality`, nnU-Net channel files' suffixes; data that names none is an error), and the
    modality dropout when none was given (DEFAULT_MODALITY_DROPOUT with several modalities, else unset)."""
    if config.data.modalities == [AUTO_MODALITIES]:
        names = data.channel_names
        if not names or len(names) < 2:
            raise ConfigError(
                f"--modalities auto: {config.data.path} does not name several channels (an MSD dataset.json "
                "'modality' or nnU-Net channel files case_0000, case_0001, ... do); name them: --modalities t1,flair"
            )
        config.data.modalities = [str(name) for name in names]
        data.notes.append(f"modalities from the data: {', '.join(config.data.modalities)}")
    if config.train.modality_dropout is None and config.data.modalities and len(config.data.modalities) > 1:
        config.train.modality_dropout = DEFAULT_MODALITY_DROPOUT
