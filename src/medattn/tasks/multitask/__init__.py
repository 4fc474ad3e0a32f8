"""Multi-task learning: several heads on one shared encoder. Importing this registers the task."""

from medattn.tasks.multitask import task  # noqa: F401  (registers "multitask")
