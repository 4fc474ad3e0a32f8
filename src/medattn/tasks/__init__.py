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
from medattn.tasks import classify, detect, mil, multitask, regress, segment, synthesis, translate  # noqa: F401
from medattn.tasks.base import Task, requirements_met


@cache
def get_task(name: str) -> Task:
    """The registered task `name`; an unknown name fails with the closest ones."""
    return TASKS.create(name)


def all_tasks() -> list[Task]:
    return [get_task(entry.name) for entry in TASKS]


def task_for_data(path: str | Path, *, config=None) -> Task:
    """The task whose data layout `path` is (a mask folder: segmentation; continuous targets: regression; ...);
    a task that requires options (`Task.requires`) is asked only when `config` sets them."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    for task in sorted(all_tasks(), key=lambda t: t.recognition_order):  # the most specific layouts first
        if requirements_met(config, task) and task.recognises(path):
            return task
    raise DataError(f"{path}: no task recognises this data; pass --task ({', '.join(TASKS.names())})")


def task_for_config(config) -> Task:
    """config.task, or the task recognised from config.data.path."""
    if config.task is not None:
        return get_task(config.task)
    if not config.data.path:
        raise ConfigError("--data is required (or data.path in --config)")
    return task_for_data(config.data.path, config=config)


def task_for_run(run: str | Path) -> Task:
    """The task of a finished run, or of a cross-validation directory's first member, from its model card."""
    from medattn.engine.loaded import read_card
    from medattn.runs import require_run
    from medattn.tune.ensemble import member_paths

    first = member_paths(Path(run))[0]
    return get_task(card_task(read_card(require_run(first))))


def card_task(card: dict) -> str:
    """The task a model card names (cards written before tasks were separate name the label type)."""
    return legacy_task(card.get("task"))[0]


def legacy_task(name: str | None) -> tuple[str | None, str | None]:
    """(task, label type) for a name written before tasks were separate from label types ("binary" was a task);
    a current task name comes back as it is."""
    for task in all_tasks():
        if name in task.legacy_names:
            return task.name, name
    return name, None
