"""`detect_anchorfree`: a one-stage, anchor-free detector in the manner of FCOS / YOLOX / YOLOv8, 2D and 3D.

Attention ResNet backbone (CBAM or SE in every block) -> feature pyramid -> on each predicting level a decoupled
head: a classification branch (K logits per cell, sigmoid, no background class) and a box branch (the distances
from the cell's centre to the box's 2D faces, softplus x stride). There are no anchors: the detection task assigns
ground-truth boxes to cells (tasks/detect/assign.py) and trains with an IoU-aware classification loss and a GIoU
(or DIoU) box loss.

`forward(x)` returns (B, P, K + 2D): for every cell of every level (finest first, row-major, see
models/detector.py `level_points`) its K class logits, then its 2D raw box distances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.layers import ConvNormAct, conv_type
from medattn.models.detector import Detector, PyramidOptions, level_points, level_shapes, pyramid_options
from medattn.registry import MODELS

PRIOR = 0.01  # initial foreground probability of every cell (RetinaNet's prior): the loss starts near balance


def decode_boxes(raw: torch.Tensor, centres: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """(..., P, 2D) raw distances -> boxes [centre - d_lo, centre + d_hi] in input pixels."""
    dims = centres.shape[-1]
    distance = F.softplus(raw.float()) * strides[:, None]
    return torch.cat([centres - distance[..., :dims], centres + distance[..., dims:]], dim=-1)


class PointDetector(Detector):
    kind = "points"

    def __init__(
        self, *, spatial_dims: int, in_channels: int, num_classes: int, pyramid: PyramidOptions, head_depth: int
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, pyramid=pyramid)
        channels, norm = pyramid.channels, pyramid.norm

        def branch() -> nn.Sequential:
            return nn.Sequential(
                *[
                    ConvNormAct(channels, channels, spatial_dims=spatial_dims, norm=norm, act="silu")
                    for _ in range(head_depth)
                ]
            )

        conv = conv_type(spatial_dims)
        levels = len(self.strides)
        self.cls_branches = nn.ModuleList([branch() for _ in range(levels)])
        self.box_branches = nn.ModuleList([branch() for _ in range(levels)])
        self.head = nn.ModuleDict(
            {
                "cls": nn.ModuleList([conv(channels, num_classes, 1) for _ in range(levels)]),
                "box": nn.ModuleList([conv(channels, 2 * spatial_dims, 1) for _ in range(levels)]),
            }
        )
        for layer in self.head["cls"]:
            nn.init.constant_(layer.bias, -math.log((1 - PRIOR) / PRIOR))
        for layer in self.head["box"]:
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0.5)  # softplus(0.5) ~ 1 stride each way: a cell-sized box

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        outputs = []
        for level, x in enumerate(features):  # x (B, channels, *S_l)
            logits = self.head["cls"][level](self.cls_branches[level](x))  # (B, K, *S_l)
            distances = self.head["box"][level](self.box_branches[level](x))  # (B, 2D, *S_l)
            outputs.append(torch.cat([logits, distances], dim=1).flatten(2))  # (B, K + 2D, P_l)
        return torch.cat(outputs, dim=2).transpose(1, 2)  # (B, P, K + 2D)

    def output_shape(self, batch: int, spatial) -> tuple[int, int, int]:
        """(B, P, K + 2D) of `forward` for inputs of `spatial` size."""
        cells = sum(math.prod(shape) for shape in level_shapes(spatial, self.strides))
        return batch, cells, self.num_classes + 2 * self.spatial_dims

    def decode(self, output: torch.Tensor, spatial: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(class probabilities (B, P, K), boxes (B, P, 2D)) of a forward output for inputs of `spatial` size."""
        centres, strides = level_points(spatial, self.strides, device=output.device)
        scores = output[..., : self.num_classes].float().sigmoid()
        return scores, decode_boxes(output[..., self.num_classes :], centres, strides)

    def candidates(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        scores, boxes = self.decode(self(x), x.shape[2:])
        return list(zip(boxes, scores, strict=True))


@MODELS.register(
    "detect_anchorfree",
    tasks=("detection",),
    description="one-stage anchor-free detector: attention ResNet + feature pyramid + decoupled heads",
)
def detect_anchorfree(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    widths: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    channels: int | None = None,
    head_depth: int = 2,
    attention: str | None = None,
    reduction: int = 8,
    norm: str = "batch",
) -> PointDetector:
    """`strides`: the levels that predict (4 for small objects); `head_depth`: convs in each head branch."""
    pyramid = pyramid_options(
        spatial_dims,
        widths=widths,
        depths=depths,
        strides=strides,
        channels=channels,
        attention=attention,
        reduction=reduction,
        norm=norm,
    )
    dims = {"spatial_dims": spatial_dims, "in_channels": in_channels, "num_classes": num_classes}
    model = PointDetector(**dims, pyramid=pyramid, head_depth=head_depth)
    model._record("detect_anchorfree", **pyramid.to_dict(), head_depth=head_depth)
    return model
