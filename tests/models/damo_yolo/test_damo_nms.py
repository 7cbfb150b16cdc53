"""Vectorised NMS against a brute-force greedy reference, and the post-processor."""

from __future__ import annotations

import pytest
import torch

from models.box_ops import box_iou
from models.damo_yolo.postprocess import DamoYoloPostprocessor
from models.nms import batched_nms, nms


def _greedy_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    iou = box_iou(boxes, boxes)[0].tolist()
    keep: list[int] = []
    for i in order:
        if all(iou[i][j] <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def _random_boxes(n: int, seed: int, clusters: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # Boxes jittered around a few centres, so overlaps and suppression chains are common.
    centres = torch.rand(clusters, 2, generator=gen) * 200
    xy = centres[torch.randint(clusters, (n,), generator=gen)] + torch.randn(n, 2, generator=gen) * 8
    wh = torch.rand(n, 2, generator=gen) * 40 + 10
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), dim=1)
    scores = torch.rand(n, generator=gen)
    return boxes, scores


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_nms_equals_brute_force(seed: int, iou_threshold: float) -> None:
    boxes, scores = _random_boxes(150, seed)
    keep = nms(boxes, scores, iou_threshold=iou_threshold)
    expected = _greedy_reference(boxes, scores, iou_threshold)
    assert keep.tolist() == expected
    assert 0 < len(expected) < 150  # the case is non-trivial


@pytest.mark.parametrize("seed", range(4))
def test_batched_nms_equals_per_class_brute_force(seed: int) -> None:
    boxes, scores = _random_boxes(200, seed)
    labels = torch.randint(4, (200,), generator=torch.Generator().manual_seed(100 + seed))
    keep = batched_nms(boxes, scores, labels, iou_threshold=0.5)
    expected: list[int] = []
    for c in range(4):
        idx = (labels == c).nonzero().squeeze(1)
        expected += [int(idx[i]) for i in _greedy_reference(boxes[idx], scores[idx], 0.5)]
    assert sorted(keep.tolist()) == sorted(expected)
    assert torch.all(scores[keep][:-1] >= scores[keep][1:])  # by decreasing score


def test_nms_edge_cases() -> None:
    assert nms(torch.zeros(0, 4), torch.zeros(0), iou_threshold=0.5).tolist() == []
    same = torch.tensor([[0.0, 0, 10, 10]] * 3)
    assert nms(same, torch.tensor([0.2, 0.9, 0.5]), iou_threshold=0.5).tolist() == [1]
    # Two identical boxes of different classes both survive class-wise NMS.
    kept = batched_nms(same[:2], torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), iou_threshold=0.5)
    assert kept.tolist() == [0, 1]
    with pytest.raises(ValueError, match="nms expects"):
        nms(torch.zeros(3, 4), torch.zeros(2), iou_threshold=0.5)


def test_postprocessor_threshold_classes_topk_and_rescale() -> None:
    scores = torch.zeros(1, 4, 3)
    scores[0, 0] = torch.tensor([0.9, 0.6, 0.01])  # one box, two classes above threshold
    scores[0, 1, 0] = 0.8  # overlaps box 0 heavily in class 0 -> suppressed
    scores[0, 2, 2] = 0.3
    scores[0, 3, 1] = 0.04  # below threshold
    boxes = torch.tensor([[[0.0, 0, 64, 32], [1.0, 0, 64, 32], [32, 32, 64, 64], [0, 0, 8, 8]]])
    post = DamoYoloPostprocessor(num_classes=3)
    (out,) = post(
        {"scores": scores, "boxes": boxes}, image_size=(64, 64), orig_sizes=torch.tensor([[128, 320]])
    )
    assert out["labels"].tolist() == [0, 1, 2]
    torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.6, 0.3]))
    # x scaled by 320/64 = 5, y by 128/64 = 2.
    torch.testing.assert_close(out["boxes"][0], torch.tensor([0.0, 0, 320, 64]))
    torch.testing.assert_close(out["boxes"][2], torch.tensor([160.0, 64, 320, 128]))
    top1 = DamoYoloPostprocessor(num_classes=3, max_detections=1)
    (out1,) = top1(
        {"scores": scores, "boxes": boxes}, image_size=(64, 64), orig_sizes=torch.tensor([[64, 64]])
    )
    assert out1["labels"].tolist() == [0] and out1["boxes"].shape == (1, 4)
