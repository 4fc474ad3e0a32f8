"""The grid file of `medattn tune grid`: what to search, checked strictly before any training.

    base:                         # optional: a run config, the same schema as `medattn train --config`
      train: {epochs: 20}
    search:                       # dotted config keys -> the values to try
      model.options.kernel_size: [3, 5, 7]
      model.options.depths: [[1, 1, 1], [2, 2, 2]]
      train.lr: [1.0e-3, 3.0e-3]
    folds: 5                      # cross-validation folds scoring each point (optional)
    metric: auc                   # a summary metric of the task (default: its headline, e.g. auc or dice); the
                                  # mean over folds is maximised (minimised for losses and distances)
    sampler: grid                 # grid (every combination) | tpe | random
    trials: 12                    # how many points to try (default: the size of the grid)

An unknown key, a searched key that is not a config field (or a model option the model lacks) and a value
the config would refuse are all errors naming the file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from medattn.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from medattn.errors import ConfigError, MedattnError
from medattn.tune.folds import GROUPINGS

TOP_KEYS = ("base", "search", "folds", "repeats", "group", "metric", "sampler", "trials")
SAMPLERS = ("grid", "tpe", "random")
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass
class GridSpec:
    path: str
    base: RunConfig
    search: dict[str, list[Any]]
    folds: int = 5
    repeats: int = 1
    group: str = "auto"
    metric: str | None = None  # None: the task's headline metric
    sampler: str = "grid"
    trials: int | None = None  # None: the size of the grid

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.search.values())

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the searched values, as {dotted key: value}."""
        keys = list(self.search)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*self.search.values())]

    def to_dict(self) -> dict[str, Any]:
        """The settings that define the study (saved in the study directory; trials may change on resume)."""
        return {
            "base": self.base.to_dict(),
            "search": self.search,
            "folds": self.folds,
            "repeats": self.repeats,
            "group": self.group,
            "metric": self.metric,
            "sampler": self.sampler,
        }


def load_grid(path: str | Path) -> GridSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    return grid_from_dict(raw, where=str(path))


def grid_from_dict(raw: Any, *, where: str) -> GridSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'search' (and optionally {', '.join(TOP_KEYS[2:])})")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (valid: {', '.join(TOP_KEYS)})")
    base_raw = _coerced(raw.get("base") or {}, where=f"{where}: base")
    base = RunConfig.from_dict(base_raw, source=f"{where}: base")
    search = raw.get("search")
    if not isinstance(search, dict) or not search:
        raise ConfigError(f"{where}: 'search' must map dotted config keys to lists of values, e.g. train.lr: [0.001]")
    spec = GridSpec(
        path=where,
        base=base,
        search={str(key): _values(key, values, where) for key, values in search.items()},
        folds=_integer(raw, "folds", 5, where, minimum=2),
        repeats=_integer(raw, "repeats", 1, where, minimum=1),
        group=_choice(raw, "group", "auto", GROUPINGS, where),
        metric=_metric(raw.get("metric"), where),
        sampler=_choice(raw, "sampler", "grid", SAMPLERS, where),
        trials=None if raw.get("trials") is None else _integer(raw, "trials", 1, where, minimum=1),
    )
    _check_keys(spec)
    task = task_of(spec)
    if task is not None:
        metric_of(spec, task)  # a metric the task does not report fails here, before any training
    return spec


def task_of(spec: GridSpec):
    """The task of the search (base.task, or recognised from base.data.path), or None while no data is given."""
    from medattn.tasks import task_for_config

    if spec.base.task is None and not (spec.base.data.path and Path(spec.base.data.path).exists()):
        return None
    return task_for_config(spec.base)


def metric_of(spec: GridSpec, task) -> str:
    """The metric the search maximises: the grid's, checked against the task's summary metrics, or its headline."""
    if spec.metric is None:
        return task.fold_metric
    if spec.metric not in task.summary_keys:
        raise ConfigError(
            f"{spec.path}: metric {spec.metric!r} is not one of {task.name}'s: {', '.join(task.summary_keys)}"
        )
    return spec.metric


def point_config(spec: GridSpec, point: dict[str, Any], *, spatial_dims: int) -> RunConfig:
    """The run config of one search point: the base with the point's values set.

    Searched model options are merged onto the options the base would train with, which for the task's default
    model without options are the task's defaults for the data's dimensions.
    """
    raw = copy.deepcopy(spec.base.to_dict())
    options = {}
    for key, value in point.items():
        section, name, *option = key.split(".", 2)
        if option:
            options[option[0]] = copy.deepcopy(value)
        else:
            raw[section][name] = copy.deepcopy(value)
    if options:
        current = raw["model"]["options"]
        task = task_of(spec)
        if raw["model"]["name"] is None and task is not None:
            raw["model"]["name"], defaults = task.default_model(spatial_dims)
            current = current or defaults
        raw["model"]["options"] = {**current, **options}
    return RunConfig.from_dict(_coerced(raw, where=spec.path), source=f"{spec.path}: search point {point}")


def _values(key: Any, values: Any, where: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: search.{key} must be a non-empty list of values, found {values!r}")
    parts = str(key).split(".")
    return [_coerce(parts[0], parts[1], v) if len(parts) == 2 else v for v in values]


def _metric(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: metric must be a metric name such as auc or dice, found {value!r}")
    return value


def _check_keys(spec: GridSpec) -> None:
    """Every searched key names a config field (or an option of every model searched); every value is valid."""
    task = task_of(spec)
    default = spec.base.model.name or (task.default_model(2)[0] if task is not None else None)
    models = [m for m in spec.search.get("model.name", [default]) if m is not None]
    for key, values in spec.search.items():
        parts = key.split(".")
        section = SECTIONS.get(parts[0])
        names = [f.name for f in dataclasses.fields(section)] if section else []
        is_option = parts[:2] == ["model", "options"] and len(parts) == 3
        if section is None or len(parts) < 2 or parts[1] not in names or (len(parts) > 2 and not is_option):
            fields = [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]
            close = difflib.get_close_matches(key, fields, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f" (valid: {', '.join(fields)}, model.options.X)"
            raise ConfigError(f"{spec.path}: search key {key!r} is not a config field{hint}")
        if is_option:
            for model in models:
                _check_option(model, parts[2], where=f"{spec.path}: search key {key!r}")
        for value in values:
            try:
                point_config(spec, {key: value}, spatial_dims=2)
            except MedattnError as error:
                raise ConfigError(f"{spec.path}: search key {key!r}, value {value!r}: {error}") from error
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{spec.path}: search key {key!r}, value {value!r} has the wrong type") from error


def _check_option(model: str, option: str, *, where: str) -> None:
    import medattn.models  # noqa: F401  (registers the model families)
    from medattn.registry import MODELS

    parameters = inspect.signature(MODELS.get(model).builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = sorted(set(parameters) - {"spatial_dims", "in_channels", "num_classes"})
    if option not in accepted:
        close = difflib.get_close_matches(option, accepted, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        listed = ", ".join(accepted)
        raise ConfigError(f"{where}: model {model!r} has no option {option!r} ({hint}its options: {listed})")


def _coerced(raw: Any, *, where: str) -> Any:
    """A run-config mapping with numbers YAML left as text made numbers (YAML reads 1e-3 as a string)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(raw).__name__}")
    result = dict(raw)
    for section, values in raw.items():
        if section in SECTIONS and isinstance(values, dict):
            result[section] = {name: _coerce(section, name, value) for name, value in values.items()}
    return result


def _coerce(section: str, name: str, value: Any) -> Any:
    kind = SECTIONS.get(section)
    hint = get_type_hints(kind).get(name) if kind else None
    if isinstance(value, str) and (hint is float or float in get_args(hint)):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _integer(raw: dict, key: str, default: int, where: str, *, minimum: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {key} must be an integer of at least {minimum}, found {value!r}")
    return value


def _choice(raw: dict, key: str, default: str, allowed: tuple[str, ...], where: str) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise ConfigError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")
    return value


def with_overrides(
    spec: GridSpec, *, data: str | None, folds: int | None, sampler: str | None, trials: int | None
) -> GridSpec:
    """The grid with command-line flags applied over the file (each checked like its key in the file)."""
    if data is not None:
        spec.base.data.path = data
    if folds is not None:
        spec.folds = _integer({"--folds": folds}, "--folds", 5, "command line", minimum=2)
    if sampler is not None:
        spec.sampler = _choice({"--sampler": sampler}, "--sampler", "grid", SAMPLERS, "command line")
    if trials is not None:
        spec.trials = _integer({"--trials": trials}, "--trials", 1, "command line", minimum=1)
    return spec
