"""Image-to-image translation. Importing this registers the task."""

from medattn.tasks.translate import task  # noqa: F401  (registers "translation")
