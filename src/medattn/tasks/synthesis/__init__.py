"""Class-conditional image synthesis (DDPM) as a task of the engine: see task.py."""

from medattn.tasks.synthesis import task  # noqa: F401  (registers the task)
