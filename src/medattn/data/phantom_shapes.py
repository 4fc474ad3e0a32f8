"""The anatomy of a phantom: shapes, smooth random fields, and where body, organs and lesions go.

Coordinates are normalised: every axis spans (-1, 1) across the field of view, so a shape keeps its
proportions at every `size`. Voxel i of an axis has its centre at (i + 0.5) * 2 / size - 1; quantities
that must be measured in voxels (edge ramps, gaps between lesions) are converted with `size / 2`.
Everything here is numpy only and works the same for 2D and 3D; `phantom.py` turns an anatomy into images.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ORGAN_KINDS = 3  # organ tissue types; each image shows 2 or 3 of them, each at most once


@lru_cache(maxsize=16)
def grid(spatial_dims: int, size: int) -> np.ndarray:
    """Voxel-centre coordinates, (*spatial, spatial_dims) float32 in (-1, 1). Shared: read-only."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    points = np.stack(np.meshgrid(*([axis] * spatial_dims), indexing="ij"), axis=-1)
    points.setflags(write=False)
    return points


def random_rotation(rng: np.random.Generator, spatial_dims: int) -> np.ndarray:
    """A uniformly random orthogonal (d, d) matrix; its columns are the principal axes of a shape."""
    q, r = np.linalg.qr(rng.standard_normal((spatial_dims, spatial_dims)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipse (2D) or ellipsoid (3D) in normalised coordinates."""

    center: np.ndarray  # (d,)
    radii: np.ndarray  # (d,) semi-axes along the columns of `rotation`
    rotation: np.ndarray  # (d, d)

    def radius2(self, points: np.ndarray) -> np.ndarray:
        """Squared normalised radius at each point, (*spatial): below 1 inside, 0 at the centre."""
        local = (points - self.center.astype(np.float32)) @ self.rotation / self.radii.astype(np.float32)
        return np.einsum("...i,...i->...", local, local)

    def soft(self, radius2: np.ndarray, *, size: int, width: float = 1.0) -> np.ndarray:
        """Partial-volume weight in [0, 1], a linear ramp `width` voxels wide across the boundary.

        The ramp crosses 0.5 exactly on the boundary, so `soft > 0.5` is the hard mask `radius2 < 1`.
        """
        ramp = float(self.radii.min()) * (size / 2.0) / width  # voxels per unit of normalised radius
        return np.clip((1.0 - np.sqrt(radius2)) * ramp + 0.5, 0.0, 1.0)


@lru_cache(maxsize=16)
def _frequency2(spatial_dims: int, size: int) -> np.ndarray:
    """Squared spatial frequency (cycles per normalised unit) on the rfftn grid. Shared: read-only."""
    full = np.fft.fftfreq(size) * (size / 2.0)
    half = np.fft.rfftfreq(size) * (size / 2.0)
    axes = [full] * (spatial_dims - 1) + [half]
    k2 = sum(np.square(a) for a in np.meshgrid(*axes, indexing="ij", sparse=True))
    k2 = np.asarray(k2, dtype=np.float64)
    k2.setflags(write=False)
    return k2


def smooth_noise(rng: np.random.Generator, spatial_dims: int, size: int, *, scale: float) -> np.ndarray:
    """A Gaussian random field with zero mean and unit std, correlated over `scale` (normalised units).

    White noise low-pass filtered in Fourier space by a Gaussian kernel of std `scale` (periodic, which is
    harmless for texture). Returns (*spatial) float32.
    """
    white = rng.standard_normal((size,) * spatial_dims, dtype=np.float32)
    transfer = np.exp(-2.0 * (np.pi * scale) ** 2 * _frequency2(spatial_dims, size))
    field = np.fft.irfftn(np.fft.rfftn(white) * transfer, s=white.shape).astype(np.float32)
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def bias_field(rng: np.random.Generator, spatial_dims: int, size: int, *, amplitude: float) -> np.ndarray:
    """A slowly varying multiplicative field around 1 (linear plus quadratic in each axis), (*spatial)."""
    points = grid(spatial_dims, size)
    linear = rng.uniform(-1.0, 1.0, spatial_dims).astype(np.float32)
    quadratic = rng.uniform(-0.5, 0.5, spatial_dims).astype(np.float32)
    poly = points @ linear + np.square(points) @ quadratic
    poly /= np.abs(linear).sum() + np.abs(quadratic).sum() + 1e-6  # now within [-1, 1]
    return np.exp(amplitude * poly).astype(np.float32)


def rician(rng: np.random.Generator, image: np.ndarray, *, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (as in MR): noisy, with a positive floor in air."""
    noise = rng.standard_normal((2, *image.shape), dtype=np.float32) * np.float32(sigma)
    return np.sqrt(np.square(image + noise[0]) + np.square(noise[1]))


def bounding_box(hard: np.ndarray) -> np.ndarray:
    """Inclusive voxel-index box of the True voxels: [min_0, ..., min_{d-1}, max_0, ..., max_{d-1}]."""
    lows, highs = [], []
    for axis in range(hard.ndim):
        others = tuple(a for a in range(hard.ndim) if a != axis)
        hits = np.flatnonzero(hard.any(axis=others))
        lows.append(hits[0])
        highs.append(hits[-1])
    return np.asarray(lows + highs, dtype=np.float32)


@dataclass(frozen=True)
class PhantomStyle:
    """Appearance knobs. Radii are fractions of half the field of view (lesions are at least 1 voxel)."""

    noise: float = 0.03  # Rician noise sigma
    texture: float = 0.04  # amplitude of the smooth tissue texture
    detail: float = 0.6  # weight of the lesion-scale texture (lesion look-alikes) against the coarse one
    bias: float = 0.15  # bias field: intensities vary by about exp(+-bias) across the field
    organ_jitter: float = 0.05  # organ intensities vary by +-this from image to image
    lesion_contrast: tuple[float, float] = (0.15, 0.30)
    lesion_radius: tuple[float, float] = (0.07, 0.14)
    dark_lesions: float = 0.5  # probability that a lesion is darker than its organ


@dataclass
class Organ:
    weight: np.ndarray  # soft weight inside the body, (*spatial)
    kind: int  # index into Contrast.organs
    jitter: float


@dataclass
class Lesion:
    weight: np.ndarray  # soft weight, zero outside its organ
    hard: np.ndarray  # bool voxels labelled lesion
    organ: int
    delta: float  # signed contrast against the organ


@dataclass
class Anatomy:
    body: np.ndarray  # soft weight, (*spatial)
    owner: np.ndarray  # int8: -2 air, -1 body, k >= 0 organ k (later organs drawn over earlier ones)
    organs: list[Organ]
    lesions: list[Lesion]
    texture: np.ndarray  # unit-std random field
    bias: np.ndarray


def draw_anatomy(
    rng: np.random.Generator,
    *,
    spatial_dims: int,
    size: int,
    style: PhantomStyle,
    n_lesions: int,
    exact: bool = True,
) -> Anatomy:
    """A random body with 2-3 organs and `n_lesions` lesions (fewer if space runs out and not `exact`)."""
    points = grid(spatial_dims, size)  # (*spatial, d)
    body = Ellipsoid(
        rng.uniform(-0.05, 0.05, spatial_dims),
        rng.uniform(0.72, 0.92, spatial_dims),
        random_rotation(rng, spatial_dims),
    )
    body_r2 = body.radius2(points)
    body_w = body.soft(body_r2, size=size)
    owner = np.where(body_r2 < 1, -1, -2).astype(np.int8)
    organs, core = [], np.zeros(owner.shape, dtype=bool)
    for k, kind in enumerate(rng.permutation(ORGAN_KINDS)[: rng.integers(2, 4)]):
        direction = rng.standard_normal(spatial_dims)
        offset = direction / np.linalg.norm(direction) * rng.uniform(0.0, 0.5)  # inside the body
        center = body.center + body.rotation @ (offset * body.radii)
        shape = Ellipsoid(center, rng.uniform(0.2, 0.4, spatial_dims), random_rotation(rng, spatial_dims))
        r2 = shape.radius2(points)
        inside = (r2 < 1) & (owner > -2)
        owner[inside] = k
        core = (core & ~inside) | (inside & (r2 < 0.5))
        jitter = rng.uniform(-1, 1) * style.organ_jitter
        organs.append(Organ(shape.soft(r2, size=size) * body_w, int(kind), jitter))
    lesions = _place_lesions(rng, owner=owner, core=core, n=n_lesions, size=size, style=style)
    if exact and len(lesions) < n_lesions:
        raise ValueError(
            f"could not place {n_lesions} separate lesions in a {size}^{spatial_dims} phantom "
            f"(room for {len(lesions)} in this one); use fewer lesions or a larger size"
        )
    texture = smooth_noise(rng, spatial_dims, size, scale=0.2)
    texture += style.detail * smooth_noise(rng, spatial_dims, size, scale=0.05)
    bias = bias_field(rng, spatial_dims, size, amplitude=style.bias)
    return Anatomy(body_w, owner, organs, lesions, texture, bias)


def _place_lesions(
    rng: np.random.Generator, *, owner: np.ndarray, core: np.ndarray, n: int, size: int, style: PhantomStyle
) -> list[Lesion]:
    """Put up to n lesions at organ voxels, at least one clear voxel apart so each is its own component.

    Centres come from the organ cores first, then from anywhere in an organ. When that is too crowded
    the lesion shrinks, down to a single voxel, before placement stops short of n.
    """
    spatial_dims = owner.ndim
    points = grid(spatial_dims, size)
    pools = [np.argwhere(core), np.argwhere(owner >= 0)]  # (M, d) voxel indices
    centers, reaches = np.zeros((0, spatial_dims)), np.zeros(0)
    taken = np.zeros(owner.shape, dtype=bool)  # placed lesions and their neighbours
    lesions = []
    for _ in range(n):
        radii = max(rng.uniform(*style.lesion_radius) * size / 2, 1.0) * rng.uniform(0.8, 1.2, spatial_dims)
        rotation = random_rotation(rng, spatial_dims)
        delta = (-1.0 if rng.random() < style.dark_lesions else 1.0) * rng.uniform(*style.lesion_contrast)
        center = None
        while center is None:
            single = radii.max() < 1.0  # a one-voxel lesion only has to avoid its neighbours
            for pool in pools:
                if single:
                    free = ~taken[tuple(pool.T)]
                else:  # every voxel of a lesion lies within `reach` of its centre
                    distance = np.linalg.norm(pool[:, None, :] - centers[None], axis=-1)  # (M, placed)
                    free = np.all(distance - reaches >= radii.max() + 2.0, axis=1)
                if free.any():
                    center = pool[rng.choice(np.flatnonzero(free))]
                    break
            else:
                if single:
                    return lesions  # no room left: the caller decides whether fewer will do
                radii = radii * 0.7 if radii.max() * 0.7 >= 1.0 else np.full(spatial_dims, 0.5)
        organ = int(owner[tuple(center)])
        shape = Ellipsoid(points[tuple(center)].astype(np.float64), radii * 2.0 / size, rotation)
        r2 = shape.radius2(points)
        in_organ = owner == organ
        hard = (r2 < 1) & in_organ
        lesions.append(Lesion(shape.soft(r2, size=size, width=1.5) * in_organ, hard, organ, delta))
        centers = np.vstack([centers, center])
        reaches = np.append(reaches, radii.max())
        taken |= _grow(hard)
    return lesions


def _grow(mask: np.ndarray) -> np.ndarray:
    """Dilation by one voxel in every direction, diagonals included (a 3x3 or 3x3x3 cube)."""
    out = mask.copy()
    for axis in range(mask.ndim):
        step = out.copy()
        head = [slice(None)] * mask.ndim
        tail = [slice(None)] * mask.ndim
        head[axis], tail[axis] = slice(1, None), slice(None, -1)
        step[tuple(head)] |= out[tuple(tail)]
        step[tuple(tail)] |= out[tuple(head)]
        out = step
    return out
