"""Box geometry, NMS, RoIAlign and boxes from masks, against values worked out by hand, in 2D and 3D."""

import numpy as np
import pytest
import torch

from medattn.data.mask_boxes import mask_boxes
from medattn.layers.boxes import aligned_iou, batched_nms, box_iou, clip_boxes, nms
from medattn.layers.roi_align import roi_align


def test_iou_by_hand_in_2d_and_3d():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0, 1.0]]))
    cube = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0]])
    shifted = torch.tensor([[1.0, 1.0, 1.0, 3.0, 3.0, 3.0]])
    torch.testing.assert_close(box_iou(cube, shifted), torch.tensor([[1 / 15]]))  # 1 / (8 + 8 - 1)


def test_generalised_and_distance_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0]])  # apart: IoU 0, enclosing 3 x 1 with 1 unused
    torch.testing.assert_close(aligned_iou(a, b, kind="giou"), torch.tensor([-1 / 3]))
    # centres 2 apart along the first axis, enclosing diagonal^2 = 3^2 + 1^2
    torch.testing.assert_close(aligned_iou(a, b, kind="diou"), torch.tensor([-4 / 10]))
    torch.testing.assert_close(aligned_iou(a, a, kind="giou"), torch.tensor([1.0]))


def test_nms_keeps_the_best_of_each_cluster_and_only_within_a_class():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.5]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]  # 0 and 1 overlap 3 above 0.5
    labels = torch.tensor([0, 1, 0, 0])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [3, 1, 2]  # box 1 is another class
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0


def test_nms_matches_brute_force_on_random_3d_boxes():
    generator = torch.Generator().manual_seed(0)
    lo = torch.rand(200, 3, generator=generator) * 50
    boxes = torch.cat([lo, lo + 2 + torch.rand(200, 3, generator=generator) * 10], dim=1)
    scores = torch.rand(200, generator=generator)
    kept = nms(boxes, scores, 0.3).tolist()
    expected, order = [], torch.argsort(scores, descending=True).tolist()
    overlap = box_iou(boxes, boxes)
    for i in order:
        if all(overlap[i, j] <= 0.3 for j in expected):
            expected.append(i)
    assert kept == expected


def test_clip_boxes_cuts_to_the_image():
    boxes = torch.tensor([[-3.0, 2.0, 5.0, 40.0]])
    assert clip_boxes(boxes, (10, 32)).tolist() == [[0.0, 2.0, 5.0, 32.0]]


@pytest.mark.parametrize("dims", [2, 3])
def test_roi_align_samples_a_linear_map_exactly(dims):
    """A map linear in its coordinates pools to its value at each bin's centre (bilinear sampling is exact)."""
    size, stride = 16, 2
    axes = torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * dims, indexing="ij")
    # value at cell i = its centre's input coordinate along axis 0, (i + 0.5) * stride, plus 3 x axis 1's
    features = ((axes[0] + 0.5) * stride + 3 * (axes[1] + 0.5) * stride)[None, None]
    box = torch.tensor([[4.0, 6.0] + [2.0] * (dims - 2) + [12.0, 10.0] + [10.0] * (dims - 2)])
    pooled = roi_align(features, box, torch.tensor([0]), output_size=2, stride=stride)  # (1, 1, 2, 2[, 2])
    centres0 = torch.tensor([6.0, 10.0])  # bins of [4, 12] along axis 0
    centres1 = torch.tensor([7.0, 9.0])  # bins of [6, 10] along axis 1
    expected = centres0[:, None] + 3 * centres1[None, :]
    got = pooled[0, 0] if dims == 2 else pooled[0, 0, :, :, 0]
    torch.testing.assert_close(got, expected)


def test_boxes_from_mask_components_per_class():
    mask = np.zeros((10, 12), np.uint8)
    mask[1:3, 1:4] = 1  # one piece of class 1
    mask[5, 5] = 1  # a diagonal pair: two pieces by faces, one when diagonals connect
    mask[6, 6] = 1
    mask[7:10, 8:12] = 2
    boxes, labels = mask_boxes(mask)
    assert labels.tolist() == [1, 1, 1, 2]
    assert boxes.tolist()[0] == [1, 1, 3, 4]  # [row lo, col lo, row hi + 1, col hi + 1]
    assert boxes.tolist()[3] == [7, 8, 10, 12]
    full, _ = mask_boxes(mask, connectivity="full")
    assert [5, 5, 7, 7] in full.tolist()
    big, big_labels = mask_boxes(mask, min_size=2)
    assert big_labels.tolist() == [1, 2]
    volume = np.zeros((4, 5, 6), np.uint8)
    volume[1:3, 2:4, 0:6] = 3
    assert mask_boxes(volume)[0].tolist() == [[1, 2, 0, 3, 4, 6]]


def test_nms_on_the_whole_matrix_and_box_by_box_agree(monkeypatch):
    import medattn.layers.boxes as boxes_module

    generator = torch.Generator().manual_seed(3)
    lo = torch.rand(500, 2, generator=generator) * 100
    boxes = torch.cat([lo, lo + 5 + torch.rand(500, 2, generator=generator) * 20], dim=1)
    scores = torch.rand(500, generator=generator)
    whole = nms(boxes, scores, 0.4)
    monkeypatch.setattr(boxes_module, "CLUSTER_LIMIT", 0)
    assert nms(boxes, scores, 0.4).tolist() == whole.tolist()
