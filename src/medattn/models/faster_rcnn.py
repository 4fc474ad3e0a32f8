"""`faster_rcnn`: the two-stage detector of Ren et al. (2015) with a feature pyramid (Lin et al. 2017), 2D and 3D.

Stage one, the region proposal network: on every predicting level, anchors of three sizes (4, 5 and 6.3 x the
stride) and, in 2D, three aspect ratios; one shared conv head scores each anchor's objectness and regresses its
offsets to a box. The best anchors after per-image NMS are the proposals. Stage two: each proposal is pooled from
the level that matches its size with RoIAlign (layers/roi_align.py, written with grid_sample), then two fully
connected layers give K + 1 class logits (the last is background) and class-agnostic box offsets.

`forward(x)` returns the proposal network's output (B, A, 1 + 2D): for every anchor (finest level first,
row-major, the anchor shapes innermost) its objectness logit and 2D offsets. In training mode it also keeps the
pyramid maps in `model.features` for the loss to run stage two on its sampled proposals (tasks/detect/); every
forward replaces them. `detect` runs both stages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from medattn.layers import conv_type
from medattn.layers.boxes import batched_nms, clip_boxes
from medattn.layers.roi_align import roi_align
from medattn.models.detector import Detector, PyramidOptions, level_shapes, pyramid_options
from medattn.registry import MODELS

ANCHOR_SCALES = (4.0, 4.0 * 2 ** (1 / 3), 4.0 * 2 ** (2 / 3))  # anchor side / stride
RATIOS = {2: (0.5, 1.0, 2.0), 3: (1.0,)}  # first axis : second axis (2D); cubes in 3D
RPN_WEIGHTS, ROI_WEIGHTS = (1.0, 1.0), (10.0, 5.0)  # offset scale of centres and of log sizes (torchvision's)
LOG_SIZE_LIMIT = math.log(1000.0 / 16)
PROPOSALS = {True: (1000, 1000), False: (1000, 1000)}  # training: (before NMS per level, after); inference


def anchor_shapes(stride: int, spatial_dims: int) -> torch.Tensor:
    """(A, D) side lengths of the anchors of one level."""
    shapes = []
    for scale in ANCHOR_SCALES:
        side = scale * stride
        for ratio in RATIOS[spatial_dims]:
            stretch = [math.sqrt(ratio), 1 / math.sqrt(ratio)] if spatial_dims == 2 else [1.0] * 3
            shapes.append([side * s for s in stretch])
    return torch.tensor(shapes)


def anchors_for(spatial: Sequence[int], strides: Sequence[int], *, device=None) -> torch.Tensor:
    """(A_total, 2D) anchors of every level for an input of `spatial` size, in the order `forward` lays them out."""
    out = []
    for stride, shape in zip(strides, level_shapes(spatial, strides), strict=True):
        axes = [(torch.arange(n, dtype=torch.float32, device=device) + 0.5) * stride for n in shape]
        centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 1, len(shape))  # (P, 1, D)
        half = anchor_shapes(stride, len(shape)).to(device)[None] / 2  # (1, A, D)
        out.append(torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 2 * len(shape)))
    return torch.cat(out)


def encode(boxes: torch.Tensor, reference: torch.Tensor, weights=RPN_WEIGHTS) -> torch.Tensor:
    """Offsets taking `reference` boxes to `boxes` (pairs, (N, 2D)): centre shift over size, log size ratio."""
    dims = boxes.shape[-1] // 2
    size_r, size_b = reference[:, dims:] - reference[:, :dims], boxes[:, dims:] - boxes[:, :dims]
    centre_r, centre_b = reference[:, :dims] + size_r / 2, boxes[:, :dims] + size_b / 2
    shift = weights[0] * (centre_b - centre_r) / size_r
    scale = weights[1] * torch.log(size_b.clamp_min(1e-3) / size_r)
    return torch.cat([shift, scale], dim=-1)


def decode(offsets: torch.Tensor, reference: torch.Tensor, weights=RPN_WEIGHTS) -> torch.Tensor:
    """Boxes from `offsets` on `reference` boxes, the inverse of `encode`."""
    dims = reference.shape[-1] // 2
    size_r = reference[:, dims:] - reference[:, :dims]
    centre = reference[:, :dims] + size_r / 2 + offsets[:, :dims].float() / weights[0] * size_r
    size = size_r * torch.exp((offsets[:, dims:].float() / weights[1]).clamp(max=LOG_SIZE_LIMIT))
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


class TwoStageDetector(Detector):
    kind = "two_stage"

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        pyramid: PyramidOptions,
        roi_size: int,
        representation: int,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, pyramid=pyramid)
        channels = pyramid.channels
        conv = conv_type(spatial_dims)
        self.anchors_per_cell = len(ANCHOR_SCALES) * len(RATIOS[spatial_dims])
        self.rpn = nn.ModuleDict(
            {
                "conv": nn.Sequential(conv(channels, channels, 3, padding=1), nn.ReLU()),
                "objectness": conv(channels, self.anchors_per_cell, 1),
                "offsets": conv(channels, self.anchors_per_cell * 2 * spatial_dims, 1),
            }
        )
        self.roi_size = roi_size
        self.box_head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * roi_size**spatial_dims, representation),
            nn.ReLU(),
            nn.Linear(representation, representation),
            nn.ReLU(),
        )
        self.head = nn.ModuleDict(
            {"cls": nn.Linear(representation, num_classes + 1), "box": nn.Linear(representation, 2 * spatial_dims)}
        )
        for layer in (self.rpn["objectness"], self.rpn["offsets"], self.rpn["conv"][0]):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.head["cls"].weight, std=0.01)
        nn.init.normal_(self.head["box"].weight, std=0.001)
        self.features: list[torch.Tensor] = []

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.training:
            self.features = features
        outputs = []
        for x in features:  # (B, channels, *S_l)
            hidden = self.rpn["conv"](x)
            score = self.rpn["objectness"](hidden).flatten(2).transpose(1, 2)  # (B, P_l, A)
            offsets = self.rpn["offsets"](hidden).flatten(2).transpose(1, 2)  # (B, P_l, A * 2D)
            batch, cells = score.shape[:2]
            both = torch.cat([score[..., None], offsets.reshape(batch, cells, self.anchors_per_cell, -1)], dim=-1)
            outputs.append(both.reshape(batch, cells * self.anchors_per_cell, -1))  # (B, P_l * A, 1 + 2D)
        return torch.cat(outputs, dim=1)

    def output_shape(self, batch: int, spatial) -> tuple[int, int, int]:
        """(B, A, 1 + 2D) of `forward` for inputs of `spatial` size."""
        cells = sum(math.prod(shape) for shape in level_shapes(spatial, self.strides))
        return batch, cells * self.anchors_per_cell, 1 + 2 * self.spatial_dims

    def anchors(self, spatial: Sequence[int], *, device=None) -> torch.Tensor:
        return anchors_for(spatial, self.strides, device=device)

    def proposals(self, output: torch.Tensor, spatial: Sequence[int]) -> list[torch.Tensor]:
        """Per image: the proposal boxes (R, 2D), detached, best objectness first."""
        before, after = PROPOSALS[self.training]
        anchors = self.anchors(spatial, device=output.device)
        sizes = [math.prod(s) * self.anchors_per_cell for s in level_shapes(spatial, self.strides)]
        level = torch.repeat_interleave(
            torch.arange(len(sizes), device=output.device), torch.tensor(sizes, device=output.device)
        )
        found = []
        for image in output.detach():
            chosen = []
            for index in range(len(sizes)):  # the best anchors of each level, so small levels are not crowded out
                rows = torch.nonzero(level == index).flatten()
                chosen.append(rows[torch.topk(image[rows, 0], min(before, len(rows))).indices])
            rows = torch.cat(chosen)
            boxes = clip_boxes(decode(image[rows, 1:], anchors[rows]), spatial)
            sides = boxes[:, boxes.shape[1] // 2 :] - boxes[:, : boxes.shape[1] // 2]
            valid = (sides >= 1).all(dim=1)
            rows, boxes = rows[valid], boxes[valid]
            kept = batched_nms(boxes, image[rows, 0], level[rows], 0.7)[:after]
            found.append(boxes[kept])
        return found

    def level_of(self, boxes: torch.Tensor) -> torch.Tensor:
        """(R,) the predicting level each box is pooled from: the one whose anchors match its geometric-mean side."""
        dims = boxes.shape[1] // 2
        side = (boxes[:, dims:] - boxes[:, :dims]).clamp_min(1).log().mean(dim=1).exp()
        level = torch.floor(torch.log2(side / (ANCHOR_SCALES[0] * self.strides[0])))
        return level.clamp(0, len(self.strides) - 1).long()

    def classify_regions(self, features: list[torch.Tensor], regions: list[torch.Tensor]):
        """(class logits (R, K + 1), offsets (R, 2D)) of the regions of every image, in order."""
        boxes = torch.cat(regions)
        image = torch.cat([torch.full((len(r),), i, device=boxes.device) for i, r in enumerate(regions)])
        pooled = features[0].new_zeros((len(boxes), features[0].shape[1], *[self.roi_size] * self.spatial_dims))
        levels = self.level_of(boxes)
        for index, (x, stride) in enumerate(zip(features, self.strides, strict=True)):
            rows = torch.nonzero(levels == index).flatten()
            if len(rows):
                pooled[rows] = roi_align(x, boxes[rows], image[rows], output_size=self.roi_size, stride=stride)
        hidden = self.box_head(pooled)
        return self.head["cls"](hidden), self.head["box"](hidden)

    def candidates(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        features = self.forward_features(x)
        regions = self.proposals(self.forward_head(features), x.shape[2:])
        logits, offsets = self.classify_regions(features, regions)
        scores = logits.float().softmax(dim=1)[:, :-1]  # (R, K) without background
        boxes = clip_boxes(decode(offsets, torch.cat(regions), ROI_WEIGHTS), x.shape[2:])
        sizes = [len(r) for r in regions]
        return list(zip(boxes.split(sizes), scores.split(sizes), strict=True))


@MODELS.register(
    "faster_rcnn",
    tasks=("detection",),
    description="two-stage detector: attention ResNet + feature pyramid, region proposals, RoIAlign box head",
)
def faster_rcnn(
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    widths: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    channels: int | None = None,
    roi_size: int | None = None,
    representation: int = 128,
    attention: str | None = None,
    reduction: int = 8,
    norm: str = "batch",
) -> TwoStageDetector:
    """`roi_size`: RoIAlign bins per axis (7 in 2D, 4 in 3D); `representation`: the box head's width."""
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
    head = {"roi_size": int(roi_size or {2: 7, 3: 4}[spatial_dims]), "representation": representation}
    model = TwoStageDetector(
        spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, pyramid=pyramid, **head
    )
    model._record("faster_rcnn", **pyramid.to_dict(), **head)
    return model
