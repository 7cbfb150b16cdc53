"""NMS against a textbook greedy loop whose IoU is computed here, pair by pair, with Python floats."""

from __future__ import annotations

import pytest
import torch

import models.nms as nms_module
from models.nms import batched_nms, nms


def _iou(a: list[float], b: list[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = max(a[2] - a[0], 0) * max(a[3] - a[1], 0) + max(b[2] - b[0], 0) * max(b[3] - b[1], 0) - inter
    return inter / union if union > 0 else 0.0


def greedy(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    """Visit boxes by decreasing score (lower index first on ties); keep one unless a kept box
    overlaps it with IoU strictly above the threshold."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= threshold for j in keep):
            keep.append(i)
    return keep


def _clustered(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(5, 2, generator=gen) * 150
    xy = centres[torch.randint(5, (n,), generator=gen)] + torch.randn(n, 2, generator=gen) * 6
    wh = torch.rand(n, 2, generator=gen) * 30 + 8
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), dim=1)
    # Quantised scores: many exact ties, to pin the tie order.
    scores = (torch.rand(n, generator=gen) * 8).floor() / 8
    return boxes, scores


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.6])
def test_nms_equals_greedy_loop(seed: int, threshold: float) -> None:
    boxes, scores = _clustered(60, seed)
    keep = nms(boxes, scores, iou_threshold=threshold)
    expected = greedy(boxes.tolist(), scores.tolist(), threshold)
    assert keep.tolist() == expected
    assert keep.dtype == torch.int64
    assert 1 < len(expected) < 60


def test_nms_row_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    boxes, scores = _clustered(50, 9)
    expected = greedy(boxes.tolist(), scores.tolist(), 0.5)
    monkeypatch.setattr(nms_module, "_ROW_BLOCK", 7)  # 50 rows in 8 uneven blocks
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == expected


@pytest.mark.parametrize("max_keep", [1, 3, 6, 7, 8, 1000])
def test_max_keep_equals_the_full_result_cut(monkeypatch: pytest.MonkeyPatch, max_keep: int) -> None:
    """The scan stops once ``max_keep`` boxes are kept (possibly mid-way through the blocks): the
    first ``max_keep`` of greedy NMS depend only on higher-scoring boxes."""
    boxes, scores = _clustered(50, 4)
    expected = greedy(boxes.tolist(), scores.tolist(), 0.3)
    monkeypatch.setattr(nms_module, "_ROW_BLOCK", 7)
    assert nms(boxes, scores, iou_threshold=0.3, max_keep=max_keep).tolist() == expected[:max_keep]
    labels = torch.arange(50) % 3
    full = batched_nms(boxes, scores, labels, iou_threshold=0.3)
    assert (
        batched_nms(boxes, scores, labels, iou_threshold=0.3, max_keep=max_keep).tolist()
        == full[:max_keep].tolist()
    )


def test_suppression_chain_and_strict_threshold() -> None:
    # A suppresses B; B would suppress C but is itself suppressed, so C survives.
    boxes = torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10], [10.0, 0, 20, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, iou_threshold=0.3).tolist() == [0, 2]
    # IoU(A, B) is exactly 1/3: kept at threshold 1/3 (suppression needs strictly above).
    assert _iou(boxes[0].tolist(), boxes[1].tolist()) == pytest.approx(1 / 3)
    assert nms(boxes, scores, iou_threshold=0.34).tolist() == [0, 1, 2]
    assert nms(boxes, scores, iou_threshold=0.33).tolist() == [0, 2]


def test_nms_edge_cases() -> None:
    assert nms(torch.zeros(0, 4), torch.zeros(0), iou_threshold=0.5).tolist() == []
    assert nms(torch.tensor([[1.0, 2, 3, 4]]), torch.tensor([0.1]), iou_threshold=0.5).tolist() == [0]
    # Zero-area boxes overlap nothing, even an identical zero-area box.
    flat = torch.tensor([[0.0, 0, 0, 10], [0.0, 0, 0, 10], [0.0, 5, 10, 5]])
    assert nms(flat, torch.tensor([0.3, 0.2, 0.1]), iou_threshold=0.0).tolist() == [0, 1, 2]
    # Equal scores: lower index first, and it suppresses the later one.
    same = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    assert nms(same, torch.tensor([0.5, 0.5]), iou_threshold=0.5).tolist() == [0]
    for bad_boxes, bad_scores in [
        (torch.zeros(3, 5), torch.zeros(3)),
        (torch.zeros(3, 4), torch.zeros(2)),
        (torch.zeros(4), torch.zeros(1)),
    ]:
        with pytest.raises(ValueError, match="nms expects boxes"):
            nms(bad_boxes, bad_scores, iou_threshold=0.5)


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_equals_per_class_greedy(seed: int) -> None:
    boxes, scores = _clustered(80, 20 + seed)
    boxes = boxes - 70  # negative coordinates too
    labels = torch.randint(3, (80,), generator=torch.Generator().manual_seed(seed))
    keep = batched_nms(boxes, scores, labels, iou_threshold=0.4)
    expected: list[int] = []
    for c in range(3):
        idx = [i for i in range(80) if int(labels[i]) == c]
        kept = greedy([boxes[i].tolist() for i in idx], [float(scores[i]) for i in idx], 0.4)
        expected += [idx[k] for k in kept]
    order = sorted(expected, key=lambda i: (-float(scores[i]), i))
    assert keep.tolist() == order


def test_batched_nms_classes_never_suppress_each_other() -> None:
    box = [[0.0, 0, 10, 10]] * 3
    keep = batched_nms(
        torch.tensor(box), torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 0]), iou_threshold=0.5
    )
    assert keep.tolist() == [0, 1]
    # Touching classes: a box of class 1 right next to class 0's span must not be shifted onto it.
    boxes = torch.tensor([[0.0, 0, 4, 4], [4.0, 0, 8, 4], [0.0, 0, 4, 4]])
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 0, 0]), iou_threshold=0.0)
    assert keep.tolist() == [0, 1, 2]
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), iou_threshold=0.5).tolist() == []


def test_empty_and_single_box_results_are_int64_indices() -> None:
    for keep in (
        nms(torch.zeros(0, 4), torch.zeros(0), iou_threshold=0.5),
        batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), iou_threshold=0.5),
    ):
        assert keep.dtype == torch.int64 and keep.shape == (0,)
    one = torch.tensor([[2.0, 3.0, 9.0, 7.0]])
    keep = batched_nms(one, torch.tensor([0.4]), torch.tensor([3]), iou_threshold=0.5)
    assert keep.tolist() == [0] and keep.dtype == torch.int64


def test_class_offset_clears_the_whole_coordinate_span() -> None:
    # Identical 8 x 8 boxes of two classes: every coordinate of class 1 is shifted by more than the
    # span of all boxes, so the shifted copy cannot touch the original even diagonally.
    boxes = torch.tensor([[0.0, 0, 8, 8], [0.0, 0, 8, 8]])
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), iou_threshold=0.0)
    assert keep.tolist() == [0, 1]


def test_a_box_at_exactly_the_threshold_with_a_box_kept_in_an_earlier_block_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Across blocks the rule is the same as within one: suppression needs IoU strictly above."""
    monkeypatch.setattr(nms_module, "_ROW_BLOCK", 2)
    # A and B: intersection 1, union 2, IoU exactly 0.5 in any float; X overlaps neither.
    boxes = torch.tensor([[0.0, 0, 2, 1], [50.0, 50, 60, 60], [0.0, 0, 1, 1]])
    scores = torch.tensor([0.9, 0.8, 0.7])  # blocks: (A, X), then (B)
    assert _iou(boxes[0].tolist(), boxes[2].tolist()) == 0.5
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == [0, 1, 2]
    assert nms(boxes, scores, iou_threshold=0.49).tolist() == [0, 1]


def test_max_keep_reads_on_while_the_first_blocks_keep_fewer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first block that keeps one box (seven copies of it) does not end the scan at max_keep 2."""
    monkeypatch.setattr(nms_module, "_ROW_BLOCK", 7)
    copies = torch.tensor([[0.0, 0, 10, 10]]).repeat(7, 1)
    others = torch.tensor([[20.0, 0, 30, 10], [40.0, 0, 50, 10]])
    boxes = torch.cat((copies, others))
    scores = torch.linspace(1.0, 0.1, 9)
    assert nms(boxes, scores, iou_threshold=0.5, max_keep=2).tolist() == [0, 7]
    assert nms(boxes, scores, iou_threshold=0.5, max_keep=3).tolist() == [0, 7, 8]
