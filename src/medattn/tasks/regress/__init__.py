"""Regression: continuous targets per image. Importing this registers the task."""
