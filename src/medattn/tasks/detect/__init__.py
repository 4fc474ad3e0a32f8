"""Detection: boxes of several classes in 2D and 3D (task.py registers it)."""

from medattn.tasks.detect import task  # noqa: F401  (registers the task)
