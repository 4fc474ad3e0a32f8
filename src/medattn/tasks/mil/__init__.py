"""Multiple instance learning: one label per bag of images, by attention MIL (task.py)."""

from medattn.tasks.mil.task import MILTask

__all__ = ["MILTask"]
