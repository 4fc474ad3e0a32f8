"""What every detector shares: an attention ResNet backbone giving maps at strides 4, 8, 16, ..., a feature pyramid
on top, and the surface the detection task calls. 2D and 3D from `spatial_dims`.

`forward(x)` gives one tensor (the raw dense predictions the model's loss reads); `detect(x)` gives, per image,
boxes (layers/boxes.py convention, input pixel coordinates), scores and labels after non-maximum suppression.
`strides` are the pyramid levels that predict: the detection task picks the finest one from the training boxes
(stride 4 where boxes are small), the model builds every backbone stage in `widths` regardless, so the coarse
stages still give the finer levels their context through the pyramid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.layers import ConvNormAct
from medattn.layers.pyramid import FeaturePyramid
from medattn.models.base import ModelBase, check_choice, check_lengths
from medattn.models.resnet import ATTENTIONS, residual_stages

FIRST_STRIDE = 4  # the first stage's output: a stride-2 stem, then a stride-2 block
# per image: crowded pictures (blood smears, cell cultures) hold several hundred objects
DEFAULT_DETECTIONS = {"score_threshold": 0.05, "iou_threshold": 0.6, "max_detections": 1000}
# Options per dimension that a model left unset takes: a volume has far more voxels per object than a picture has
# pixels, so 3D stays narrow, with SE (almost free) instead of CBAM. The detection task sets `strides` from the
# sizes of the training boxes.
DEFAULTS = {
    2: {
        "widths": (16, 32, 64, 128),
        "depths": (1, 1, 2, 1),
        "channels": 48,
        "attention": "cbam",
        "strides": (8, 16, 32),
    },
    3: {"widths": (16, 32, 64), "depths": (1, 1, 1), "channels": 32, "attention": "se", "strides": (8, 16)},
}


class PyramidBackbone(nn.Module):
    """Stride-2 stem, then one stage per width, each halving the grid: maps at strides 4, 8, 16, ..."""

    def __init__(self, in_channels: int, *, spatial_dims: int, options: PyramidOptions) -> None:
        super().__init__()
        check_lengths(widths=options.widths, depths=options.depths)
        check_choice("attention", options.attention, ATTENTIONS)
        self.stem = ConvNormAct(in_channels, options.widths[0], spatial_dims=spatial_dims, stride=2, norm=options.norm)
        self.stages = nn.ModuleList(
            residual_stages(
                options.widths[0],
                options.widths,
                options.depths,
                spatial_dims=spatial_dims,
                first_stride=2,
                norm=options.norm,
                attention=options.attention,
                reduction=options.reduction,
            )
        )
        self.strides = backbone_strides(spatial_dims, options.widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps, x = [], self.stem(x)  # (B, w0, *S/2)
        for stage in self.stages:
            x = stage(x)
            maps.append(x)  # (B, w_i, *S / 2^(i+2))
        return maps


@dataclass(frozen=True)
class PyramidOptions:
    """The options every detector shares: backbone stages, the predicting levels, the pyramid's width."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    strides: tuple[int, ...]
    channels: int
    attention: str
    reduction: int
    norm: str

    def to_dict(self) -> dict:
        return asdict(self)


def backbone_strides(spatial_dims: int, widths=None) -> list[int]:
    """The strides a backbone of `widths` (default: the dimension's) offers: 4, 8, ... one per stage."""
    count = len(widths or DEFAULTS.get(spatial_dims, DEFAULTS[2])["widths"])
    return [FIRST_STRIDE * 2**i for i in range(count)]


def pyramid_options(spatial_dims: int, *, reduction: int, norm: str, **given) -> PyramidOptions:
    """The shared options, each one left None taken from DEFAULTS for `spatial_dims`."""
    defaults = DEFAULTS.get(spatial_dims, DEFAULTS[2])
    chosen = {key: defaults[key] if value is None else value for key, value in given.items()}
    return PyramidOptions(
        widths=tuple(int(w) for w in chosen["widths"]),
        depths=tuple(int(d) for d in chosen["depths"]),
        strides=tuple(int(s) for s in chosen["strides"]),
        channels=int(chosen["channels"]),
        attention=chosen["attention"],
        reduction=reduction,
        norm=norm,
    )


def level_shapes(spatial: Sequence[int], strides: Sequence[int]) -> list[tuple[int, ...]]:
    """The grid of each level for an input of `spatial` size: every stride-2 conv maps n to ceil(n / 2)."""
    return [tuple(math.ceil(n / s) for n in spatial) for s in strides]


def level_points(spatial: Sequence[int], strides: Sequence[int], *, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres (P, D) in input pixels, stride of each (P,)) of every cell of every level, finest level first,
    each level's cells in row-major order (as `.flatten(2)` lays them out)."""
    centres, cell_strides = [], []
    for stride, shape in zip(strides, level_shapes(spatial, strides), strict=True):
        axes = [(torch.arange(n, device=device, dtype=torch.float32) + 0.5) * stride for n in shape]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))
        centres.append(grid)
        cell_strides.append(torch.full((len(grid),), float(stride), device=device))
    return torch.cat(centres), torch.cat(cell_strides)


class Detector(ModelBase):
    """Base of the detectors: backbone + pyramid, `detect`, and the levels that predict (`strides`).

    A subclass gives `forward_head` and `candidates(x)`: per image, boxes (P, 2D) and class scores (P, K) before
    non-maximum suppression.
    """

    kind = ""  # "points" (one-stage, anchor-free) or "two_stage": how the detection task trains it

    def __init__(self, *, spatial_dims: int, in_channels: int, num_classes: int, pyramid: PyramidOptions) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
        self.backbone = PyramidBackbone(in_channels, spatial_dims=spatial_dims, options=pyramid)
        available = self.backbone.strides
        strides = sorted(pyramid.strides)
        if not strides or any(s not in available for s in strides) or len(set(strides)) != len(strides):
            raise ConfigError(
                f"strides {list(pyramid.strides)}: each must be one of the backbone's {available} (one per width), once"
            )
        self.strides = strides
        first = available.index(strides[0])
        self.levels = [available.index(s) - first for s in strides]  # which pyramid outputs predict
        widths = pyramid.widths[first:]
        self.neck = FeaturePyramid(widths, pyramid.channels, spatial_dims=spatial_dims, norm=pyramid.norm)
        self._first = first
        self.feature_channels = pyramid.channels

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pyramid maps that predict, finest first: (B, channels, *S / stride) each."""
        maps = self.backbone(x)[self._first :]
        pyramid = self.neck(maps)
        return [pyramid[i] for i in self.levels]

    def candidates(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, boxes (P, 2D) and class scores (P, K) before selection; each detector family says how its
        heads propose them (the base class has no heads of its own to propose with)."""
        raise TypeError(f"{type(self).__name__} is a Detector without candidates(): a detector family must define it")

    @torch.no_grad()
    def detect(
        self,
        x: torch.Tensor,
        *,
        score_threshold: float = DEFAULT_DETECTIONS["score_threshold"],
        iou_threshold: float = DEFAULT_DETECTIONS["iou_threshold"],
        max_detections: int = DEFAULT_DETECTIONS["max_detections"],
    ) -> list[dict[str, torch.Tensor]]:
        """Per image of x (B, C, *S): {"boxes" (N, 2D), "scores" (N,), "labels" (N,)}, best first, in x's pixels."""
        return [
            select_detections(
                boxes,
                scores,
                score_threshold=score_threshold,
                iou_threshold=iou_threshold,
                max_detections=max_detections,
            )
            for boxes, scores in self.candidates(x)
        ]


def select_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    candidates: int = 4000,
) -> dict[str, torch.Tensor]:
    """Boxes (P, 2D) with class scores (P, K) -> the detections of one image: every (box, class) pair above the
    threshold (a box may name several classes), the best `candidates` of them, class-aware NMS, at most
    `max_detections`."""
    from medattn.layers.boxes import batched_nms

    flat = scores.flatten()
    chosen = torch.nonzero(flat > score_threshold).flatten()
    if len(chosen) > candidates:
        chosen = chosen[torch.topk(flat[chosen], candidates).indices]
    index, labels = chosen // scores.shape[1], chosen % scores.shape[1]
    kept = batched_nms(boxes[index], flat[chosen], labels, iou_threshold)[:max_detections]
    return {"boxes": boxes[index[kept]], "scores": flat[chosen[kept]], "labels": labels[kept]}
