"""Regression: continuous targets per image. Importing this registers the task."""

from medattn.tasks.regress import task  # noqa: F401  (registers "regression")
