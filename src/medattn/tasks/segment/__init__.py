"""Segmentation: a label per pixel or voxel. Importing this registers the task."""

from medattn.tasks.segment import task  # noqa: F401  (registers "segmentation")
