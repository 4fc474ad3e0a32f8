"""Readers, writers, dataset sources, phantoms, transforms and splits.

Kept free of imports on purpose: `import medattn.data.readers` should not pull in torch or MONAI, and
the CLI answers `--help` without loading pydicom, nibabel or Pillow.
"""
