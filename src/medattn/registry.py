"""One registry for everything built by name: register, create, list.

Registering a name twice is an error; asking for an unknown name fails with the closest valid names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from medattn.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    tasks: tuple[str, ...]
    description: str
    dims: tuple[int, ...] = (2, 3)  # the spatial_dims it builds for
    source: str = "medattn"  # where the implementation lives: "medattn", or "MONAI" (wrapped)


class Registry:
    """Maps names to builders. `kind` names what is registered, for error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        *,
        tasks: tuple[str, ...] = ("classification",),
        description: str = "",
        dims: tuple[int, ...] = (2, 3),
        source: str = "medattn",
    ) -> Callable[[T], T]:
        def decorate(builder: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = description or (builder.__doc__ or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = Entry(name, builder, tasks, text, tuple(dims), source)
            return builder

        return decorate

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._entries))})")
        return self._entries[name]

    def create(self, name: str, **arguments: Any) -> Any:
        return self.get(name).builder(**arguments)

    def names(self, task: str | None = None) -> list[str]:
        return sorted(n for n, e in self._entries.items() if task is None or task in e.tasks)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())


MODELS = Registry("model")  # tagged with the task names whose outputs they give
TASKS = Registry("task")  # classification, segmentation, regression, ...: see medattn.tasks


def create_model(
    name: str,
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    options: dict[str, Any] | None = None,
) -> Any:
    """Build a registered model: `create_model("attn_resnet", spatial_dims=3, in_channels=1, num_classes=2)`.

    `options` holds the model's own keyword arguments (widths, attention type, ...), as saved in config.yaml, for a
    pruned model the channels each pruned layer kept (`pruned`, export/prune.py), and for named input modalities
    their names and how they are fused (`modalities`, `fusion`: models/fusion.py), and for clinical variables
    beside the image their vector's width, fusion and all-unknown values (`tabular`: models/clinical.py).
    """
    import medattn.models  # noqa: F401  (registers the model families)

    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    from medattn.export.prune import PRUNED, narrow

    entry = MODELS.get(name)
    options = dict(options or {})
    kept = options.pop(PRUNED, None)  # a pruned run's kept widths (export/prune.py): built full, then narrowed
    sizes = {"spatial_dims": spatial_dims, "in_channels": in_channels, "num_classes": num_classes}

    def build(options: dict):
        if "modalities" in options:  # named input modalities: the model fused over them (models/fusion.py)
            from medattn.models.fusion import wrap

            return wrap(entry.builder, name=name, **sizes, options=options)
        return entry.builder(**sizes, **options)

    try:
        if "tabular" in options:  # clinical variables fused with the image features (models/clinical.py)
            from medattn.models.clinical import wrap_clinical

            model = wrap_clinical(build, name=name, **sizes, options=options)
        else:
            model = build(options)
    except TypeError as error:
        raise ConfigError(f"model {name!r}: invalid options {sorted(options)}: {error}") from error
    if kept is not None:
        narrow(model, kept)
    return model


def model_from_card(spec: dict[str, Any]) -> Any:
    """The model a card's `model` section describes (name, spatial_dims, in_channels, num_classes, options)."""
    return create_model(
        spec["name"],
        spatial_dims=spec["spatial_dims"],
        in_channels=spec["in_channels"],
        num_classes=spec["num_classes"],
        options=spec["options"],
    )
