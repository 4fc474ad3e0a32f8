"""Loading a finished run as it was trained (its card says how), for any task."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medattn.config import RunConfig, load_config
from medattn.data.preprocess import Intensity
from medattn.engine.inputs import InputSpec
from medattn.runs import read_json, require_run, run_file


@dataclass
class LoadedRun:
    path: Path
    config: RunConfig
    card: dict
    model: object  # torch.nn.Module in eval mode

    @property
    def task(self) -> str:
        from medattn.tasks import card_task

        return card_task(self.card)

    @property
    def labels(self) -> str | None:
        """The label type of a classifier (binary, multiclass, multilabel, ordinal); None for other tasks."""
        return self.card.get("labels") or (self.card["task"] if self.task != self.card["task"] else None)

    @property
    def spec(self) -> InputSpec:
        return InputSpec.from_card(self.card)

    @property
    def intensity(self) -> Intensity:
        return self.spec.intensity

    @property
    def size(self) -> list[int]:
        return self.card["input"]["size"]


def load_run(run: str | Path, *, device=None) -> LoadedRun:
    """The run's config, card and network: PyTorch's, or under `--backend onnx|onnx-int8` (engine/backend.py) its
    exported ONNX model in an ONNX Runtime session, loaded without importing torch."""
    from medattn.engine.backend import BACKEND, OnnxNet, onnx_file

    run = require_run(run)
    with run_file(run, "config.yaml"):
        config = load_config(run / "config.yaml")
    card = read_card(run)
    if BACKEND.get() != "torch":
        return LoadedRun(run, config, card, OnnxNet(onnx_file(run, BACKEND.get())))
    from safetensors.torch import load_file

    from medattn.registry import model_from_card

    with run_file(run, "model.json"):
        model = model_from_card(card["model"])  # the architecture it names can be built
    with run_file(run, "model.safetensors"):  # and the weights fit it
        model.load_state_dict(load_file(run / "model.safetensors"))
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedRun(run, config, card, model)


def read_card(run: Path) -> dict:
    """model.json, checked for what every inference path reads from it before the model: its task and input."""
    from medattn.tasks import card_task, get_task

    with run_file(run, "model.json"):
        card = read_json(run / "model.json")
        if not isinstance(card, dict):
            raise TypeError(f"expected a JSON object, found {type(card).__name__}")
        get_task(card_task(card))
        InputSpec.from_card(card)
    return card


def tta_flips(config: RunConfig, spatial_dims: int) -> list[int]:
    """Tensor dims to flip at test time: the spatial axes training flipped (left-right if it flipped none).

    A run's config.yaml holds the resolved list; a preset name is resolved here (`auto` by data.modality).
    """
    from medattn.data.presets import resolve_augment

    axes = set()
    specs = resolve_augment(config.data.augment, spatial_dims=spatial_dims, modality=config.data.modality)
    for spec in specs:
        if spec.get("name") == "flip":
            axes |= set(spec.get("axes") or range(-spatial_dims, 0))
    return sorted({a if a < 0 else a - spatial_dims for a in axes}) or [-1]


@contextmanager
def reading(
    run: str | Path,
    *,
    series: str | None = None,
    slice_axis: int | None = None,
    backend: str = "torch",
    missing: tuple[str, ...] = (),
    clinical: str | None = None,
) -> Iterator[None]:
    """How `evaluate` and `predict` read inputs for `run`, for the duration of the block: `series` (a UID or a
    description) picks one DICOM series in folders holding several (default: the one the run trained on,
    `data.series`); `slice_axis` is the axis a 2D model cuts volumes along, in place of the one its card
    records; `backend` runs the network in PyTorch or ONNX Runtime (engine/backend.py); `missing` names input
    modalities to leave out (a model trained with named modalities, models/fusion.py), or `clinical`; `clinical`
    is the per-patient table predict looks image files up in (a model trained with --clinical)."""
    from medattn.config import check_slice_axis
    from medattn.data.readers import reading_series
    from medattn.engine.backend import BACKEND, check_backend
    from medattn.engine.inputs import CLINICAL, MISSING, SLICE_AXIS
    from medattn.errors import ConfigError
    from medattn.runs import require_run
    from medattn.tune.ensemble import member_paths

    first = require_run(member_paths(Path(run))[0])
    if series is None:
        series = load_config(first / "config.yaml").data.series
    if slice_axis is not None:
        check_slice_axis(slice_axis, "--slice-axis")
        card = read_json(first / "model.json")
        if InputSpec.from_card(card).spatial_dims != 2:
            raise ConfigError(f"--slice-axis means nothing to {run}: its model is 3D and reads volumes whole")
    if clinical is not None and not (read_json(first / "model.json").get("clinical") or {}).get("columns"):
        raise ConfigError(f"--clinical means nothing to {run}: it was not trained with clinical values")
    token, engine, absent = SLICE_AXIS.set(slice_axis), BACKEND.set(check_backend(backend)), MISSING.set(missing)
    table = CLINICAL.set(clinical)
    try:
        with reading_series(series):
            yield
    finally:
        SLICE_AXIS.reset(token)
        BACKEND.reset(engine)
        MISSING.reset(absent)
        CLINICAL.reset(table)
