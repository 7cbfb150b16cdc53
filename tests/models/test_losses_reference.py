"""QFL, DFL, GIoU (DAMO-YOLO) and VFL, L1, GIoU (RT-DETRv2) against the papers' formulas, per element.

References are Python-float loops over anchors/queries and classes:
- QFL (GFL paper): positive class -|y - s|^beta ((1-y) log(1-s) + y log s), other classes
  -s^beta log(1-s); summed over classes; s = sigmoid(x) of the logit x the loss takes.
- DFL (GFL paper): -((y_r - y) log S_l + (y - y_l) log S_r), S = softmax over bins, y_l = floor(y).
- VFL (VarifocalNet / RT-DETR): BCE(sigmoid(x), t) weighted by t on the matched class and by
  alpha p^gamma elsewhere (t = IoU of the matched pair, 0 elsewhere); RT-DETR sums it and divides by
  the number of boxes.
"""

from __future__ import annotations

import math

import pytest
import torch

from models.damo_yolo.losses import box_to_distance, distribution_focal_loss, giou_loss, quality_focal_loss
from models.rtdetrv2.losses import giou_box_loss, l1_box_loss, matched_ious, varifocal_loss


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _giou_xyxy(a: list[float], b: list[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def _iou_xyxy(a: list[float], b: list[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _xyxy(b: list[float]) -> list[float]:
    return [b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2]


# ------------------------------------------------------------------------------------------ QFL


def ref_qfl(scores: list[list[float]], labels: list[int], quality: list[float], beta: float) -> list[float]:
    out = []
    for s_row, label, y in zip(scores, labels, quality, strict=True):
        total = 0.0
        for c, s in enumerate(s_row):
            if c == label:
                total += -(abs(y - s) ** beta) * ((1 - y) * math.log(1 - s) + y * math.log(s))
            else:
                total += -(s**beta) * math.log(1 - s)
        out.append(total)
    return out


@pytest.mark.parametrize("beta", [2.0, 1.5])
def test_qfl_equals_formula_on_random_inputs(beta: float) -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(12, 5, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    labels = torch.tensor([0, 4, -1, 2, 5, 1, -1, 3, 3, 0, 7, 2])  # -1, 5 and 7: background
    quality = torch.rand(12, generator=gen, dtype=torch.float64)
    quality[3] = 0.0  # a positive with zero quality
    quality[8] = 1.0
    loss = quality_focal_loss(torch.logit(scores), labels, quality, beta=beta)
    expected = ref_qfl(scores.tolist(), [int(v) for v in labels], quality.tolist(), beta)
    assert loss.tolist() == pytest.approx(expected, rel=1e-9)


def test_qfl_hand_worked_numbers() -> None:
    # Positive: s = 0.5, y = 0.8 -> 0.3^2 * ln 2 = 0.09 ln 2; negative class s = 0.2 -> 0.04 * -ln 0.8.
    scores = torch.tensor([[0.5, 0.2]])
    loss = quality_focal_loss(torch.logit(scores), torch.tensor([0]), torch.tensor([0.8]))
    assert float(loss) == pytest.approx(0.09 * math.log(2) + 0.04 * -math.log(0.8), rel=1e-5)
    # Without the modulating factor the positive term would be ln 2 = 0.69, not 0.062.
    positive_only = quality_focal_loss(torch.tensor([[0.0]]), torch.tensor([0]), torch.tensor([0.8]))
    assert float(positive_only) == pytest.approx(0.09 * math.log(2), rel=1e-5)


def test_qfl_edge_cases() -> None:
    # No positives at all; saturated logits stay finite (logs floored at -100 as BCE does).
    logits = torch.cat((torch.tensor([[-1e4, 1e4]]), torch.logit(torch.tensor([[0.3, 0.7]]))))
    loss = quality_focal_loss(logits, torch.tensor([-1, -1]), torch.zeros(2))
    assert torch.isfinite(loss).all()
    assert float(loss[1]) == pytest.approx(0.09 * -math.log(0.7) + 0.49 * -math.log(0.3), rel=1e-5)
    assert float(loss[0]) == pytest.approx(100.0, rel=1e-6)  # x = 1e4 negative: 1 * 100 (log floor)
    assert quality_focal_loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), torch.zeros(0)).shape == (
        0,
    )
    # Gradient flows through the modulating factor and the BCE alike (finite everywhere).
    x = torch.logit(torch.tensor([[0.4, 0.1]])).requires_grad_()
    quality_focal_loss(x, torch.tensor([1]), torch.tensor([0.6])).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------------------------ DFL


def ref_dfl(logits: list[list[float]], targets: list[float]) -> list[float]:
    out = []
    for row, y in zip(logits, targets, strict=True):
        m = max(row)
        log_z = m + math.log(sum(math.exp(v - m) for v in row))
        left = math.floor(y)
        right = left + 1
        out.append(-((right - y) * (row[left] - log_z) + (y - left) * (row[right] - log_z)))
    return out


def test_dfl_equals_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(10, 17, generator=gen, dtype=torch.float64) * 3
    target = torch.rand(10, generator=gen, dtype=torch.float64) * 15.9
    target[0], target[1], target[2] = 0.0, 7.0, 15.9  # integer and top-end targets
    loss = distribution_focal_loss(logits, target)
    assert loss.tolist() == pytest.approx(ref_dfl(logits.tolist(), target.tolist()), rel=1e-9)


def test_dfl_hand_worked() -> None:
    # Uniform bins over 17: every log-probability is -ln 17, whatever the weights.
    assert float(distribution_focal_loss(torch.zeros(1, 17), torch.tensor([4.3]))) == pytest.approx(
        math.log(17), rel=1e-6
    )
    # Two bins with logits (0, ln 3): p = (1/4, 3/4); target 0.25 -> -(0.75 ln 1/4 + 0.25 ln 3/4).
    loss = distribution_focal_loss(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([0.25]))
    assert float(loss) == pytest.approx(-(0.75 * math.log(0.25) + 0.25 * math.log(0.75)), rel=1e-6)


# ----------------------------------------------------------------------------------- box losses


def test_damo_giou_loss_equals_formula_and_edges() -> None:
    gen = torch.Generator().manual_seed(2)
    xy = torch.rand(9, 2, generator=gen, dtype=torch.float64) * 50
    a = torch.cat((xy, xy + torch.rand(9, 2, generator=gen, dtype=torch.float64) * 30 + 1), 1)
    b = a + torch.randn(9, 4, generator=gen, dtype=torch.float64) * 6
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 0.5)
    b[0] = a[0]  # identical: loss 0
    b[1] = a[1] + 200  # far apart: loss near 2
    loss = giou_loss(a, b)
    expected = [1 - _giou_xyxy(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert float(loss[0]) == pytest.approx(0.0, abs=1e-6) and float(loss[1]) > 1.9
    # Degenerate identical zero-area boxes: IoU and the hull term are both 0 -> loss 1, finite.
    point = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert float(giou_loss(point, point)) == pytest.approx(1.0)


def test_box_to_distance_equals_loop() -> None:
    gen = torch.Generator().manual_seed(3)
    points = torch.rand(8, 2, generator=gen) * 40
    boxes = torch.cat(
        (points - torch.rand(8, 2, generator=gen) * 30, points + torch.rand(8, 2, generator=gen) * 30), 1
    )
    boxes[0] = torch.tensor([50.0, 50.0, 60.0, 60.0])  # point outside its box: clamped to 0
    d = box_to_distance(points, boxes, max_distance=16.0)
    for (x, y), b, row in zip(points.tolist(), boxes.tolist(), d.tolist(), strict=True):
        expected = [min(max(v, 0.0), 16.0 - 0.1) for v in (x - b[0], y - b[1], b[2] - x, b[3] - y)]
        assert row == pytest.approx(expected, abs=1e-5)


# ------------------------------------------------------------------------------------------ VFL


def ref_vfl(
    logits: torch.Tensor,
    matched: list[tuple[int, int]],
    labels: list[int],
    ious: list[float],
    num_boxes: float,
    alpha: float = 0.75,
    gamma: float = 2.0,
) -> float:
    target = {(b, q, c): t for (b, q), c, t in zip(matched, labels, ious, strict=True)}
    total = 0.0
    bsz, nq, nc = logits.shape
    for b in range(bsz):
        for q in range(nq):
            for c in range(nc):
                x = float(logits[b, q, c])
                p = _sigmoid(x)
                t = target.get((b, q, c), 0.0)
                weight = t if (b, q, c) in target else alpha * p**gamma
                bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
                total += weight * bce
    return total / num_boxes


@pytest.mark.parametrize(("alpha", "gamma"), [(0.75, 2.0), (0.5, 1.0)])
def test_vfl_equals_formula(alpha: float, gamma: float) -> None:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64) * 2
    pairs = [(0, 1), (0, 4), (1, 0)]
    labels, ious = [2, 0, 1], [0.7, 0.25, 0.9]
    matched = (torch.tensor([b for b, _ in pairs]), torch.tensor([q for _, q in pairs]))
    loss = varifocal_loss(
        logits,
        matched,
        torch.tensor(labels),
        torch.tensor(ious, dtype=torch.float64),
        num_boxes=3.0,
        alpha=alpha,
        gamma=gamma,
    )
    assert float(loss) == pytest.approx(ref_vfl(logits, pairs, labels, ious, 3.0, alpha, gamma), rel=1e-9)


def test_vfl_without_matches_and_hand_worked() -> None:
    logits = torch.zeros(1, 2, 2, dtype=torch.float64)
    empty = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    loss = varifocal_loss(logits, empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0), num_boxes=1.0)
    # Four negatives at p = 0.5: each 0.75 * 0.25 * ln 2.
    assert float(loss) == pytest.approx(4 * 0.75 * 0.25 * math.log(2), rel=1e-9)
    one = varifocal_loss(
        logits,
        (torch.tensor([0]), torch.tensor([1])),
        torch.tensor([0]),
        torch.tensor([0.6], dtype=torch.float64),
        num_boxes=2.0,
    )
    # The positive at p = 0.5, t = 0.6: weight 0.6, BCE ln 2; three negatives as above.
    assert float(one) == pytest.approx((0.6 * math.log(2) + 3 * 0.1875 * math.log(2)) / 2, rel=1e-9)


def test_vfl_gradient_treats_weight_and_target_as_constants() -> None:
    logits = torch.tensor([[[0.3, -1.2]]], dtype=torch.float64, requires_grad=True)
    ious = torch.tensor([0.8], dtype=torch.float64, requires_grad=True)
    loss = varifocal_loss(
        logits, (torch.tensor([0]), torch.tensor([0])), torch.tensor([0]), ious, num_boxes=1.0
    )
    loss.backward()
    assert logits.grad is not None and ious.grad is None
    # d/dx of w * BCE(sigmoid(x), t) with w constant is w * (sigmoid(x) - t).
    p0, p1 = _sigmoid(0.3), _sigmoid(-1.2)
    assert logits.grad[0, 0].tolist() == pytest.approx([0.8 * (p0 - 0.8), 0.75 * p1**2 * p1], rel=1e-9)


def test_rtdetr_l1_giou_and_matched_iou_equal_loops() -> None:
    gen = torch.Generator().manual_seed(5)
    pred = torch.cat(
        (torch.rand(6, 2, generator=gen) * 0.6 + 0.2, torch.rand(6, 2, generator=gen) * 0.3 + 0.05), 1
    )
    tgt = pred + torch.randn(6, 4, generator=gen) * 0.05
    tgt[:, 2:] = tgt[:, 2:].abs() + 0.01
    tgt[0] = pred[0]
    p, t = pred.tolist(), tgt.tolist()
    l1 = sum(abs(x - y) for a, b in zip(p, t, strict=True) for x, y in zip(a, b, strict=True))
    assert float(l1_box_loss(pred, tgt, num_boxes=4.0)) == pytest.approx(l1 / 4.0, rel=1e-5)
    giou = sum(1 - _giou_xyxy(_xyxy(a), _xyxy(b)) for a, b in zip(p, t, strict=True))
    assert float(giou_box_loss(pred, tgt, num_boxes=4.0)) == pytest.approx(giou / 4.0, rel=1e-5)
    ious = [_iou_xyxy(_xyxy(a), _xyxy(b)) for a, b in zip(p, t, strict=True)]
    assert matched_ious(pred, tgt).tolist() == pytest.approx(ious, rel=1e-5)
    empty = torch.zeros(0, 4)
    assert float(giou_box_loss(empty, empty, num_boxes=1.0)) == 0.0
    assert matched_ious(empty, empty).shape == (0,)


def test_qfl_saturated_logits_and_mixed_dtypes() -> None:
    # Logits of +-1e4: upstream's sigmoid scores are exactly 1 and 0 there, and BCE floors both logs
    # at -100 (log 0 = -inf), the sigmoid of -1e4 included.
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4]])
    loss = quality_focal_loss(logits, torch.tensor([0, 0]), torch.tensor([0.5, 0.5]))
    # Row 0: positive s = 1, y = 0.5: (0.5 * 0 + 0.5 * 100) * 0.5^2 = 12.5; negative s = 0: 0.
    assert float(loss[0]) == pytest.approx(12.5, rel=1e-6)
    # Row 1: positive s = 0, y = 0.5: (0.5 * 100 + 0.5 * 0) * 0.25; negative s = 1: 1 * 100.
    assert float(loss[1]) == pytest.approx(12.5 + 100.0, rel=1e-6)
    # Quality in another dtype is cast to the logits' dtype.
    mixed = quality_focal_loss(
        torch.logit(torch.tensor([[0.5, 0.2]])), torch.tensor([0]), torch.tensor([0.8], dtype=torch.float64)
    )
    assert mixed.dtype == torch.float32
    assert float(mixed) == pytest.approx(0.09 * math.log(2) + 0.04 * -math.log(0.8), rel=1e-5)


def test_dfl_keeps_one_loss_per_row() -> None:
    loss = distribution_focal_loss(torch.zeros(1, 17), torch.tensor([2.5]))
    assert loss.shape == (1,)


def test_damo_giou_loss_default_guard_on_tiny_boxes() -> None:
    # Identical boxes of area 1e-6 (the default guard of the loss): IoU = 1e-6 / 2e-6 = 0.5.
    tiny = torch.tensor([[0.0, 0.0, 1e-3, 1e-3]], dtype=torch.float64)
    assert float(giou_loss(tiny, tiny)) == pytest.approx(0.5, rel=1e-6)


def test_qfl_logits_beyond_float32_saturation_in_float64() -> None:
    # x = 30: float32 rounds sigmoid(30) to 1 (upstream's float32 BCE then reads -100), the loss
    # keeps the exact log(1 - p) = -30.000...; float64 agrees.
    for dtype in (torch.float32, torch.float64):
        logits = torch.tensor([[30.0, 30.0]], dtype=dtype)
        loss = quality_focal_loss(logits, torch.tensor([0]), torch.tensor([0.5], dtype=dtype))
        p = 1 / (1 + math.exp(-30.0))
        # Positive: (0.5 * -log p + 0.5 * 30) * (0.5 - p)^2; negative: softplus(30) * p^2.
        softplus = 30.0 + math.log1p(math.exp(-30.0))
        expected = (0.5 * -math.log(p) + 0.5 * softplus) * (0.5 - p) ** 2 + softplus * p**2
        assert float(loss[0]) == pytest.approx(expected, rel=1e-6), dtype
