"""Classification: one label (or several) per image. Importing this registers the task."""

from medattn.tasks.classify import task  # noqa: F401  (registers "classification")
