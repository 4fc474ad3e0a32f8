"""A picture of the boxes found: the image with each box outlined in its class's colour, with its score.

2D images are drawn as they are (8-bit pictures unchanged, other types between their 1st and 99th percentiles;
channels beyond three: the first); a volume becomes a mosaic of up to SLICES slices along its last axis, spread
over the stretch its boxes span (the whole volume when there are none), each with the outlines of the boxes that
cross it. Class names and scores are written beside the boxes when there are at most LABELLED of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]  # fmt: skip
SLICES = 12
LABELLED = 40


def _display(plane: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from (C, H, W): each channel between its 1st and 99th percentiles."""
    channels = plane[:3] if plane.shape[0] == 3 else plane[:1]
    if channels.dtype == np.uint8:
        picture = channels.transpose(1, 2, 0)
        return np.ascontiguousarray(np.repeat(picture, 3, axis=-1) if picture.shape[-1] == 1 else picture)
    out = []
    for channel in channels.astype(np.float64):
        low, high = np.percentile(channel, [1, 99])
        out.append(np.clip((channel - low) / max(high - low, 1e-9) * 255, 0, 255))
    picture = np.stack(out, axis=-1).astype(np.uint8)
    return np.repeat(picture, 3, axis=-1) if picture.shape[-1] == 1 else picture


def _draw(picture: np.ndarray, boxes, labels, scores, class_names):
    from PIL import Image, ImageDraw

    image = Image.fromarray(picture)
    pen = ImageDraw.Draw(image)
    for box, label, score in zip(boxes, labels, scores, strict=True):
        r0, c0, r1, c1 = (float(v) for v in box)
        colour = COLOURS[int(label) % len(COLOURS)]
        pen.rectangle([c0, r0, max(c0, c1 - 1), max(r0, r1 - 1)], outline=colour)
        if picture.shape[0] >= 64 and len(boxes) <= LABELLED:
            pen.text((c0 + 1, max(0, r0 - 10)), f"{class_names[int(label)]} {score:.2f}", fill=colour)
    return np.asarray(image)


def overlay(image: np.ndarray, found: dict, class_names: list[str], target: Path) -> None:
    """Write the picture of `found` ({"boxes", "labels", "scores"} in image pixels) on `image` (C, *S) to `target`."""
    from medattn.data.readers import write_image

    boxes, labels, scores = (np.asarray(found[k]) for k in ("boxes", "labels", "scores"))
    if image.ndim == 3:
        picture = _draw(_display(image), boxes, labels, scores, class_names)
    else:
        depth = image.shape[-1]
        lo = int(boxes[:, 2].min()) if len(boxes) else 0
        hi = int(math.ceil(boxes[:, 5].max())) if len(boxes) else depth
        chosen = np.unique(np.linspace(max(lo, 0), min(hi, depth) - 1, SLICES).round().astype(int))
        tiles = []
        for z in chosen:
            crossing = (boxes[:, 2] <= z + 0.5) & (boxes[:, 5] >= z + 0.5) if len(boxes) else np.zeros(0, bool)
            flat = boxes[crossing][:, [0, 1, 3, 4]] if len(boxes) else np.zeros((0, 4))
            tiles.append(_draw(_display(image[..., z]), flat, labels[crossing], scores[crossing], class_names))
        columns = math.ceil(math.sqrt(len(tiles)))
        rows = math.ceil(len(tiles) / columns)
        height, width = tiles[0].shape[:2]
        picture = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
        for k, tile in enumerate(tiles):
            r, c = divmod(k, columns)
            picture[r * height : (r + 1) * height, c * width : (c + 1) * width] = tile
    write_image(target, picture.transpose(2, 0, 1), None)
