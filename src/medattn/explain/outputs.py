"""Writing one explanation: a PNG overlay (2D) or slice mosaic (volumes), a NIfTI heat map on the input's grid
and affine (volumes), and the raw map as .npy on request. File names: <image>_<method>.<ext>."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.meta import ImageMeta
from medattn.explain.explainer import Explanation
from medattn.explain.overlay import mosaic_png, overlay_png


def default_meta(spatial_dims: int) -> ImageMeta:
    """1 mm, identity affine: for images held in array files, which carry no geometry."""
    return ImageMeta(spacing=(1.0,) * spatial_dims, affine=np.eye(4))


def write_explanation(explained: Explanation, out: Path, *, npy: bool = False) -> dict[str, dict[str, str]]:
    """{method: {kind: path}} of the files written for every method of `explained`."""
    from medattn.data.readers import write_image

    out.mkdir(parents=True, exist_ok=True)
    image, files = explained.image, {}
    volume = image.ndim == 4 and image.shape[-1] != 1
    for method, heat in explained.maps.items():
        stem = out / f"{explained.name}_{method.replace('+', 'p')}"
        title = f"{method} for {explained.target}\n{explained.title}"
        written = {}
        if volume:
            axis = explained.slice_axis if explained.slice_axis is not None else -1
            written["png"] = str(mosaic_png(stem.with_suffix(".png"), image, heat, title=title, axis=axis))
            meta = explained.meta or default_meta(3)
            write_image(f"{stem}.nii.gz", heat[None].astype(np.float32), meta)
            written["nifti"] = f"{stem}.nii.gz"
        else:
            flat = image.reshape(image.shape[0], *image.shape[1:3])
            written["png"] = str(overlay_png(stem.with_suffix(".png"), flat, heat.reshape(flat.shape[1:]), title=title))
        if npy:
            np.save(stem.with_suffix(".npy"), heat)
            written["npy"] = str(stem.with_suffix(".npy"))
        files[method] = written
    return files
