"""A crowded synthetic detection set, as in a blood smear: colour pictures holding hundreds of small round objects
of three classes and sizes, touching and overlapping. Deterministic by seed; numpy and Pillow only.

Each picture: a pale, unevenly lit background; 150-260 red cells (pink discs with a paler centre, 16-24 px
across), a few dozen platelets (small purple dots, 10-14 px) and a few white cells (large pale discs with a dark
nucleus, 30-40 px), slightly elliptical and turned at random, placed so neighbours may overlap by up to OVERLAP of
the smaller radius (later ones drawn over earlier ones). Each picture has its own stain (every colour scaled per
channel by up to STAIN) and focus (a Gaussian blur), then sensor noise. Every object's box is its whole ellipse,
hidden parts included, as annotators box overlapping cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("red_cell", "platelet", "white_cell")


@dataclass(frozen=True)
class Kind:
    radius: tuple[float, float]  # px
    count: tuple[int, int]  # per picture
    colour: tuple[float, float, float]
    centre: tuple[float, float, float]  # the colour at the middle (a pale centre, a dark nucleus)
    centre_share: float  # radius share of the middle


KINDS = {
    "red_cell": Kind((8.0, 12.0), (150, 260), (205, 95, 110), (228, 160, 168), 0.45),
    "platelet": Kind((5.0, 7.0), (20, 40), (150, 90, 180), (120, 60, 160), 0.5),
    "white_cell": Kind((15.0, 20.0), (2, 8), (215, 200, 230), (95, 45, 150), 0.6),
}
OVERLAP = 0.45  # neighbours may overlap by this share of the smaller radius
STAIN = 0.15  # per picture, every colour's channels scaled by a factor within 1 +- STAIN
BLUR = (0.3, 1.2)  # per picture, the focus: a Gaussian blur of this sigma in pixels


def _place(rng: np.random.Generator, radii: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 2) centres, each at most OVERLAP into its neighbours; the objects that find no place are left out (nan)."""
    centres = np.full((len(radii), 2), np.nan)
    placed = []
    for i in np.argsort(-radii):  # the largest first
        for _ in range(40):
            candidate = rng.uniform([0, 0], shape)
            if placed:
                others = np.asarray(placed)
                gap = np.hypot(*(centres[others] - candidate).T)
                limit = radii[others] + radii[i] - OVERLAP * np.minimum(radii[others], radii[i])
                if np.any(gap < limit):
                    continue
            centres[i] = candidate
            placed.append(i)
            break
    return centres


def _paint(canvas: np.ndarray, centre, axes, angle: float, kind: Kind, stain, rng: np.random.Generator) -> None:
    height, width = canvas.shape[:2]
    reach = int(math.ceil(max(axes))) + 2
    r0, r1 = max(0, int(centre[0]) - reach), min(height, int(centre[0]) + reach + 1)
    c0, c1 = max(0, int(centre[1]) - reach), min(width, int(centre[1]) + reach + 1)
    if r1 <= r0 or c1 <= c0:
        return
    rows, cols = np.mgrid[r0:r1, c0:c1].astype(np.float64) + 0.5
    dy, dx = rows - centre[0], cols - centre[1]
    u = dy * math.cos(angle) + dx * math.sin(angle)
    v = -dy * math.sin(angle) + dx * math.cos(angle)
    distance = np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2)  # 1 at the edge
    edge = np.clip((1 - distance) * min(axes) + 0.5, 0, 1)[..., None]
    middle = np.clip((kind.centre_share - distance) * min(axes) + 0.5, 0, 1)[..., None]
    shade = rng.uniform(0.9, 1.1)
    colour = (np.asarray(kind.colour) * (1 - middle) + np.asarray(kind.centre) * middle) * shade * stain
    canvas[r0:r1, c0:c1] = canvas[r0:r1, c0:c1] * (1 - edge) + colour * edge


def ellipse_box(centre, axes, angle: float) -> list[float]:
    """[row lo, col lo, row hi, col hi] of an ellipse with semi-axes `axes` turned by `angle`."""
    half_r = math.hypot(axes[0] * math.cos(angle), axes[1] * math.sin(angle))
    half_c = math.hypot(axes[0] * math.sin(angle), axes[1] * math.cos(angle))
    return [centre[0] - half_r, centre[1] - half_c, centre[0] + half_r, centre[1] + half_c]


def crowded_picture(seed: int, *, shape: tuple[int, int] = (480, 640)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(picture (3, H, W) uint8, boxes (N, 4) array axes clipped to the picture, labels (N,) into CLASSES)."""
    rng = np.random.default_rng(seed)
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width] / max(shape)
    light = 1 + 0.06 * np.sin(2 * math.pi * (rows * rng.uniform(0.5, 1.5) + cols * rng.uniform(0.5, 1.5)))
    stain = 1 + rng.uniform(-STAIN, STAIN, 3)
    canvas = np.ones((height, width, 3)) * np.asarray([236.0, 222.0, 226.0]) * stain * light[..., None]
    kinds = [k for name in CLASSES for k in [name] * int(rng.integers(*KINDS[name].count, endpoint=True))]
    radii = np.asarray([rng.uniform(*KINDS[k].radius) for k in kinds])
    centres = _place(rng, radii, shape)
    boxes, labels = [], []
    for index in rng.permutation(len(kinds)):
        if np.isnan(centres[index, 0]):
            continue
        stretch = rng.uniform(0.87, 1.15)
        axes = (radii[index] * stretch, radii[index] / stretch)
        angle = rng.uniform(0, math.pi)
        kind = KINDS[kinds[index]]
        _paint(canvas, centres[index], axes, angle, kind, stain, rng)
        box = np.clip(ellipse_box(centres[index], axes, angle), 0, [height, width, height, width])
        if np.all(box[2:] - box[:2] >= 2):
            boxes.append(box)
            labels.append(CLASSES.index(kinds[index]))
    from scipy.ndimage import gaussian_filter

    canvas = gaussian_filter(canvas, sigma=(rng.uniform(*BLUR),) * 2 + (0,))
    canvas += rng.normal(0, 4.0, canvas.shape)
    picture = np.clip(np.round(canvas), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return picture, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


def save_crowded_set(root: Path, *, n: int, seed: int = 0, shape: tuple[int, int] = (480, 640)) -> Path:
    """root/images/*.png and root/boxes.csv (path,x1,y1,x2,y2,label); returns the CSV."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = ["path,x1,y1,x2,y2,label"]
    for i in range(n):
        picture, boxes, labels = crowded_picture(seed * 100_003 + i, shape=shape)
        name = f"images/smear_{i:04d}.png"
        Image.fromarray(picture.transpose(1, 2, 0)).save(root / name)
        for (r0, c0, r1, c1), label in zip(boxes, labels, strict=True):
            lines.append(f"{name},{c0:.2f},{r0:.2f},{c1:.2f},{r1:.2f},{CLASSES[label]}")
        if not len(boxes):
            lines.append(f"{name},,,,,")
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    return root / "boxes.csv"
