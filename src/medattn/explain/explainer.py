"""A finished run's images explained the way the run predicts them, for any task.

The image is prepared by the run's input specification (engine/inputs.py): resized to the model's size, or
resampled to its spacing and covered by its sliding window (windows.py), or, for a 2D model given a volume, cut
into slices along the same axis `predict` uses. The task chooses what is explained (`Task.explain_target`); the
maps come back on the input's own grid (linear interpolation), so a NIfTI written with the input's affine
overlays it. `views` keeps each model input with its target and maps on the model's grid for faithfulness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from medattn.data.meta import ImageMeta
from medattn.explain.cam import resize_map
from medattn.explain.methods import explain_input
from medattn.explain.target import Target
from medattn.explain.windows import windowed


@dataclass
class View:
    x: torch.Tensor  # (1, C, *S') standardised model input
    target: Target
    maps: dict[str, torch.Tensor]  # method -> (*S') on the model's grid


@dataclass
class Explanation:
    name: str
    image: np.ndarray  # (C, *S) as read
    meta: ImageMeta | None
    maps: dict[str, np.ndarray]  # method -> (*S) float32 on the input's grid
    title: str  # the prediction
    target: str  # the class or output explained
    slice_axis: int | None = None  # a 2D model's slices of a volume: the axis they were cut along
    views: list[View] = field(default_factory=list)


def nearest(mask: np.ndarray, size) -> torch.Tensor:
    """(*size) labels resized by nearest neighbour (labels are never interpolated)."""
    t = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    if tuple(t.shape) == tuple(size):
        return t
    return torch.nn.functional.interpolate(t[None, None], size=tuple(size), mode="nearest")[0, 0]


class Explainer:
    def __init__(
        self, run, methods: list[str], *, layer: str | None = None, target: str | None = None, region: str = "predicted"
    ) -> None:
        from medattn.tasks import get_task

        self.run, self.methods, self.layer, self.given, self.region = run, methods, layer, target, region
        self.task, self.spec, self.model = get_task(run.task), run.spec, run.model

    # -- the model as inference runs it ------------------------------------------------------------------
    def output(self, x: torch.Tensor) -> torch.Tensor:
        """(1, K) or (1, K, *S') logits of one input (1, C, *S'), whole or by sliding window."""
        from medattn.engine.inferers import sliding_window

        with torch.no_grad():
            if self.spec.sliding:
                return sliding_window(self.model, x[0], patch=self.spec.patch, device=x.device)[None]
            return self.model(x)

    def curve(self, batch: torch.Tensor, target: Target) -> np.ndarray:
        """(B,) the target's probability (or value) for a batch of inputs, as inference computes it."""
        with torch.no_grad():
            if self.spec.sliding:
                return np.array([float(target.curve(self.output(b[None]))[0]) for b in batch])
            return torch.cat([target.curve(self.model(batch[i : i + 32])) for i in range(0, len(batch), 32)]).numpy()

    def target(self, output: torch.Tensor, *, name: str | None, mask=None) -> Target:
        return self.task.explain_target(self.run.card, output, target=name, mask=mask)

    def maps(self, x: torch.Tensor, target: Target) -> dict[str, torch.Tensor]:
        def one(method):
            def explain(window, window_target):
                return explain_input(self.model, window, window_target, method, layer=self.layer)

            return windowed(explain, x, target, self.spec.patch) if self.spec.sliding else explain(x, target)

        return {method: one(method) for method in self.methods}

    # -- one image ---------------------------------------------------------------------------------------
    def explain(self, name: str, image: np.ndarray, meta: ImageMeta | None, *, mask=None) -> Explanation:
        where = name
        fitted = image if self.spec.is_volume_for_slices(image) else self.spec.fit(image, where=where)
        axis, xs = self.spec.batch(fitted, meta, where=where)  # (N, C, *S'): one input, or a volume's slices
        outputs = [self.output(xs[i : i + 1]) for i in range(len(xs))]
        overall = self.target(torch.cat(outputs).mean(dim=0, keepdim=True), name=self.given)
        views, per_view = [], {m: [] for m in self.methods}
        for i, output in enumerate(outputs):
            x = xs[i : i + 1]
            view_mask = None
            if mask is not None and self.region == "mask":
                cut = mask.reshape(fitted.shape[1:])
                cut = cut if axis is None else np.take(cut, i, axis=axis)
                view_mask = nearest(cut, x.shape[2:]).numpy()
            if len(xs) == 1 and view_mask is None:
                target = overall
            else:  # each slice (or the given mask's region) explained for the class chosen on the whole input
                target = self.target(output, name=overall.name, mask=view_mask)
            maps = self.maps(x, target)
            views.append(View(x, target, maps))
            shape = fitted.shape[1:] if axis is None else np.delete(fitted.shape[1:], axis)
            for method, m in maps.items():
                per_view[method].append(resize_map(m[None], shape)[0].numpy())
        on_grid = {}
        for method, cuts in per_view.items():
            stacked = cuts[0] if axis is None else np.stack(cuts, axis=axis)
            on_grid[method] = stacked.reshape(image.shape[1:]).astype(np.float32)  # a one-slice NIfTI keeps its axis
        title = overall.title if len(xs) == 1 else f"{overall.title} (mean over {len(xs)} slices)"
        return Explanation(name, image, meta, on_grid, title, overall.name, axis, views)
