"""Tasks as plugins of one engine: one folder each, registered by name in `medattn.registry.TASKS`.

Importing this package registers every task. The command line, the engine and tune/ find a task here by its
name (config `task`, the run's model card) or by recognising the data; none of them names a task.
Adding a task: a folder with a `Task` subclass (tasks/base.py) registered with `@TASKS.register(name)`, and
its import below.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from medattn.errors import ConfigError, DataError
from medattn.registry import TASKS
from medattn.tasks import classify, regress, segment  # noqa: F401  (each registers its task)
from medattn.tasks.base import Task

# Recognition order: the most specific layouts first; classification takes any folder, npz or CSV left over.
RECOGNITION_ORDER = ("segmentation", "regression", "classification")


@cache
def get_task(name: str) -> Task:
    """The registered task `name`; an unknown name fails with the closest ones."""
    return TASKS.create(name)


def all_tasks() -> list[Task]:
    return [get_task(entry.name) for entry in TASKS]


def task_for_data(path: str | Path) -> Task:
    """The task whose data layout `path` is (a mask folder: segmentation; continuous targets: regression; ...)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    names = [*RECOGNITION_ORDER, *(e.name for e in TASKS if e.name not in RECOGNITION_ORDER)]
    for name in names:
        if name in TASKS and get_task(name).recognises(path):
            return get_task(name)
    raise DataError(f"{path}: no task recognises this data; pass --task ({', '.join(TASKS.names())})")


def task_for_config(config) -> Task:
    """config.task, or the task recognised from config.data.path."""
    if config.task is not None:
        return get_task(config.task)
    if not config.data.path:
        raise ConfigError("--data is required (or data.path in --config)")
    return task_for_data(config.data.path)


def task_for_run(run: str | Path) -> Task:
    """The task of a finished run, or of a cross-validation directory's first member, from its model card."""
    from medattn.runs import read_json, require_run
    from medattn.tune.ensemble import member_paths

    first = member_paths(Path(run))[0]
    card = read_json(require_run(first) / "model.json")
    return get_task(card_task(card))


def card_task(card: dict) -> str:
    """The task a model card names (cards written before tasks were separate name the label type)."""
    task = card.get("task")
    return "classification" if task in ("binary", "multiclass", "multilabel", "ordinal") else task
