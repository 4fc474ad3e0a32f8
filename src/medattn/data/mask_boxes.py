"""Boxes around the connected pieces of a label mask, per class, in 2D and 3D: every segmentation set is also a
detection set.

Each foreground label is split into its connected components (faces connected: 4-connectivity in 2D, 6 in 3D;
`connectivity="full"` joins diagonal neighbours too, 8 and 26); a component smaller than `min_size` pixels
(voxels) is dropped as speckle. A component covering pixels lo..hi of an axis gives the box [lo, hi + 1) on it
(layers/boxes.py: array axes, pixel i spanning [i, i + 1)).
"""

from __future__ import annotations

import numpy as np

from medattn.errors import ConfigError

CONNECTIVITY = ("faces", "full")


def mask_boxes(mask: np.ndarray, *, min_size: int = 1, connectivity: str = "faces") -> tuple[np.ndarray, np.ndarray]:
    """(boxes (N, 2D) float32, labels (N,) int64 mask values) of the components of every label above 0."""
    from scipy import ndimage

    if connectivity not in CONNECTIVITY:
        raise ConfigError(f"connectivity {connectivity!r} is not one of {', '.join(CONNECTIVITY)}")
    dims = mask.ndim
    structure = ndimage.generate_binary_structure(dims, 1 if connectivity == "faces" else dims)
    boxes, labels = [], []
    for value in np.unique(mask):
        if value <= 0:
            continue
        components, count = ndimage.label(mask == value, structure=structure)
        if not count:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        for index, region in enumerate(ndimage.find_objects(components), start=1):
            if region is None or sizes[index] < min_size:
                continue
            boxes.append([s.start for s in region] + [s.stop for s in region])
            labels.append(int(value))
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 2 * dims), np.asarray(labels, dtype=np.int64)
