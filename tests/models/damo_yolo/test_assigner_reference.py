"""AlignOTA against a loop reference written from DAMO-YOLO's published rule.

Reference (per image): candidates are anchors strictly inside some GT box or some GT centre square
(radius 2.5 strides); cost(a, g) = sum_c BCE(p_c, t_c) * |t_c - p_c|^2 (t = onehot(label) * IoU)
+ 3 * -log(IoU + 1e-7) + 1e8 * [not (in box g and in centre g)]; GT g takes k_g = max(1, int(sum of
its top-10 IoUs)) anchors chosen as upstream does, ``torch.topk(cost[:, g], k_g, largest=False)``;
an anchor claimed twice goes to its cheapest GT over all GTs (first on a tie). Everything except the
top-k call is computed with Python floats, one pair at a time.
"""

from __future__ import annotations

import math

import pytest
import torch

from models.damo_yolo.assigner import align_ota_assign, dynamic_k_matching
from models.damo_yolo.head import anchor_points

OUTSIDE = 1e8


def _iou(a: list[float], b: list[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def _bce(p: float, t: float) -> float:
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def reference_align_ota(
    scores: torch.Tensor,
    pred: torch.Tensor,
    points: torch.Tensor,
    strides: torch.Tensor,
    gt: torch.Tensor,
    labels: torch.Tensor,
    *,
    radius: float = 2.5,
    topk: int = 10,
    cls_weight: float = 1.0,
    iou_weight: float = 3.0,
    eps: float = 1e-7,
) -> tuple[list[int], list[float]]:
    """Loop reference: (assigned GT or -1 per anchor, IoU with it or 0)."""
    sc, pb, pts, st_, gts, lab = (
        scores.tolist(),
        pred.tolist(),
        points.tolist(),
        strides.tolist(),
        gt.tolist(),
        labels.tolist(),
    )
    num_anchors, num_gt = len(pts), len(gts)
    assigned, assigned_iou = [-1] * num_anchors, [0.0] * num_anchors
    if num_gt == 0:
        return assigned, assigned_iou
    in_both: dict[tuple[int, int], bool] = {}
    candidates = []
    for a in range(num_anchors):
        x, y = pts[a]
        any_inside = False
        for g in range(num_gt):
            x1, y1, x2, y2 = gts[g]
            in_box = x1 < x < x2 and y1 < y < y2
            cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, radius * st_[a]
            in_centre = abs(x - cx) < r and abs(y - cy) < r
            in_both[a, g] = in_box and in_centre
            any_inside = any_inside or in_box or in_centre
        if any_inside:
            candidates.append(a)
    if not candidates:
        return assigned, assigned_iou
    ious = [[_iou(pb[a], gts[g]) for g in range(num_gt)] for a in candidates]
    base = []
    for row, a in enumerate(candidates):
        costs = []
        for g in range(num_gt):
            cls = 0.0
            for c, s in enumerate(sc[a]):
                t = ious[row][g] if c == lab[g] else 0.0
                # Logs see the score clamped to [eps, 1 - eps]; the focal weight the raw score.
                cls += _bce(min(max(s, eps), 1 - eps), t) * abs(t - s) ** 2
            costs.append(cls_weight * cls + iou_weight * -math.log(ious[row][g] + eps))
        base.append(costs)
    # float32 like the detector, and the 1e8 added in float32 afterwards: the rounding that makes
    # every outside pair cost exactly the same.
    cost = torch.tensor(base, dtype=torch.float32)
    outside = torch.tensor([[0.0 if in_both[a, g] else OUTSIDE for g in range(num_gt)] for a in candidates])
    cost = cost + outside
    claimed: dict[int, list[int]] = {}
    for g in range(num_gt):
        column = sorted((ious[row][g] for row in range(len(candidates))), reverse=True)
        k = max(1, int(sum(column[:topk])))
        for row in torch.topk(cost[:, g], k, largest=False).indices.tolist():
            claimed.setdefault(row, []).append(g)
    for row, gs in claimed.items():
        if len(gs) > 1:
            values = cost[row].tolist()
            gs = [min(range(num_gt), key=lambda g: (values[g], g))]
        a = candidates[row]
        assigned[a] = gs[0]
        assigned_iou[a] = ious[row][gs[0]]
    return assigned, assigned_iou


def _anchors(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return anchor_points(
        [(size // 8, size // 8), (size // 16, size // 16), (size // 32, size // 32)],
        (8, 16, 32),
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


def _case(seed: int, num_gt: int, num_classes: int = 3) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    points, strides = _anchors()
    xy = torch.rand(num_gt, 2, generator=gen) * 44
    wh = torch.rand(num_gt, 2, generator=gen) * 36 + 4
    gt = torch.cat((xy, (xy + wh).clamp(max=64)), dim=1)
    labels = torch.randint(num_classes, (num_gt,), generator=gen)
    half = torch.rand(points.shape[0], 2, generator=gen) * 20 + 2
    jitter = torch.randn(points.shape[0], 2, generator=gen) * 3
    pred = torch.cat((points + jitter - half, points + jitter + half), dim=1)
    scores = torch.rand(points.shape[0], num_classes, generator=gen) * 0.9 + 0.05
    return scores, pred, points, strides, gt, labels


@pytest.mark.parametrize("seed", range(8))
def test_align_ota_equals_loop_reference(seed: int) -> None:
    num_gt = [1, 2, 3, 5][seed % 4]
    scores, pred, points, strides, gt, labels = _case(seed, num_gt)
    assigned, iou = align_ota_assign(scores, pred, points, strides, gt, labels)
    expected, expected_iou = reference_align_ota(scores, pred, points, strides, gt, labels)
    assert assigned.tolist() == expected
    assert iou.tolist() == pytest.approx(expected_iou, abs=1e-5)
    assert any(a >= 0 for a in expected)


def test_align_ota_edge_cases_equal_reference() -> None:
    scores, pred, points, strides, _, _ = _case(0, 1)
    cases = {
        "empty": (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)),
        "far away": (torch.tensor([[500.0, 500.0, 540.0, 540.0]]), torch.tensor([1])),
        # Zero-area box: no anchor is strictly inside it, so every pair costs the outside cost.
        "zero area": (torch.tensor([[30.0, 30.0, 30.0, 45.0]]), torch.tensor([2])),
        "one box": (torch.tensor([[8.0, 8.0, 40.0, 40.0]]), torch.tensor([0])),
    }
    for name, (gt, labels) in cases.items():
        assigned, iou = align_ota_assign(scores, pred, points, strides, gt, labels)
        expected, expected_iou = reference_align_ota(scores, pred, points, strides, gt, labels)
        assert assigned.tolist() == expected, name
        assert iou.tolist() == pytest.approx(expected_iou, abs=1e-5), name
    assert (assigned >= 0).any()
    zero_gt, zero_labels = cases["zero area"]
    zero, _ = align_ota_assign(scores, pred, points, strides, zero_gt, zero_labels)
    assert int((zero >= 0).sum()) == 1  # k = max(1, int(0)) = 1


def test_equal_costs_resolved_by_per_target_topk_not_anchor_order() -> None:
    # One GT; candidates 4 and 0 are cheap, the other four share the outside cost exactly.
    cost = torch.tensor([[3.0], [OUTSIDE], [OUTSIDE], [OUTSIDE], [2.0], [OUTSIDE]])
    ious = torch.tensor([[1.0], [1.0], [1.0], [0.5], [0.5], [0.6]])  # k = int(4.6) = 4
    matched, gt_index = dynamic_k_matching(cost, ious, candidate_topk=10)
    expected = set(torch.topk(cost[:, 0], 4, largest=False).indices.tolist())
    assert set(matched.nonzero().squeeze(1).tolist()) == expected
    assert gt_index[matched].tolist() == [0, 0, 0, 0]
    # The two cheap candidates are in; the other two come from topk's tie order, which on this
    # torch is not anchor order (anchor order would pick 1 and 2), so the case discriminates.
    assert {0, 4} <= expected and expected != {0, 1, 2, 4}


def test_hand_built_tie_in_the_full_assigner() -> None:
    # One GT; every anchor predicts the GT box itself (IoU 1) with scores 0.5, so k = 10 and every
    # cost is one of two values: the same small cost for the 11 anchors inside the box and its
    # centre square, and the outside cost for the other candidates. Ten of the eleven tied inside
    # anchors are taken, chosen as topk chooses them (worked out by the loop reference).
    points, strides = _anchors()
    gt = torch.tensor([[20.0, 20.0, 44.0, 44.0]])
    labels = torch.tensor([0])
    pred = gt.expand(points.shape[0], 4).clone()
    scores = torch.full((points.shape[0], 2), 0.5)
    assigned, iou = align_ota_assign(scores, pred, points, strides, gt, labels)
    expected, _ = reference_align_ota(scores, pred, points, strides, gt, labels)
    assert assigned.tolist() == expected
    inside = [
        a
        for a, (x, y) in enumerate(points.tolist())
        if 20 < x < 44 and 20 < y < 44 and abs(x - 32) < 2.5 * float(strides[a]) > abs(y - 32)
    ]
    assert len(inside) == 11
    picked = (assigned >= 0).nonzero().squeeze(1).tolist()
    assert len(picked) == 10 and set(picked) <= set(inside)
    assert torch.all(iou[assigned >= 0] == 1.0)
    # Anchor order would drop the last inside anchor; topk's tie order drops another one.
    assert picked != inside[:10]


def test_candidate_masks_strict_borders_equal_loop() -> None:
    # Anchors every 4 px with stride 8 (radius 20) and integer GT boxes: many anchors lie exactly
    # on a box edge or on the centre square's border, where "inside" is strict.
    from models.damo_yolo.assigner import candidate_masks

    coords = torch.arange(0, 68, 4, dtype=torch.float32)
    points = torch.cartesian_prod(coords, coords)
    strides = torch.full((points.shape[0],), 8.0)
    gt = torch.tensor([[16.0, 8.0, 48.0, 40.0], [4.0, 28.0, 12.0, 64.0]])
    candidate, in_both = candidate_masks(points, strides, gt)
    for a, (x, y) in enumerate(points.tolist()):
        flags = []
        for g, (x1, y1, x2, y2) in enumerate(gt.tolist()):
            in_box = x1 < x < x2 and y1 < y < y2
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            in_centre = abs(x - cx) < 20 and abs(y - cy) < 20
            assert bool(in_both[a, g]) == (in_box and in_centre), (x, y, g)
            flags.append(in_box or in_centre)
        assert bool(candidate[a]) == any(flags), (x, y)
    assert 0 < int(in_both.sum()) < int(candidate.sum()) < points.shape[0]


def test_class_cost_with_saturated_scores_equals_loop() -> None:
    # Scores of exactly 0 and 1: logs take p clamped to [1e-7, 1 - 1e-7]; the focal weights use the
    # raw scores. Written per (anchor, GT, class).
    from models.damo_yolo.assigner import alignment_class_cost

    scores = torch.tensor([[0.0, 1.0, 0.3], [1.0, 0.0, 0.6]], dtype=torch.float64)
    ious = torch.tensor([[0.0, 0.7], [1.0, 0.4]], dtype=torch.float64)
    labels = torch.tensor([1, 0])
    cost = alignment_class_cost(scores, ious, labels)
    for n in range(2):
        for g in range(2):
            total = 0.0
            for c in range(3):
                s = float(scores[n, c])
                p = min(max(s, 1e-7), 1 - 1e-7)
                t = float(ious[n, g]) if c == int(labels[g]) else 0.0
                total += -(t * math.log(p) + (1 - t) * math.log(1 - p)) * (t - s) ** 2
            assert float(cost[n, g]) == pytest.approx(total, rel=1e-9), (n, g)
    assert torch.isfinite(cost).all()


def test_dynamic_k_defaults_to_the_top_ten_ious() -> None:
    # Twelve anchors: ten with IoU 0.95 (sum 9.5) then 0.6 and 0.5: top-10 gives k = 9, top-11 would
    # give int(10.1) = 10.
    ious = torch.tensor([0.95] * 10 + [0.6, 0.5])[:, None]
    cost = torch.arange(12, dtype=torch.float32)[:, None]
    matched, _ = dynamic_k_matching(cost, ious)
    assert matched.tolist() == [True] * 9 + [False] * 3


def test_conflict_goes_to_the_cheapest_gt_among_three() -> None:
    # Anchor 0 is claimed by all three GTs (k = 1 each) and is cheapest for GT 0.
    cost = torch.tensor([[0.1, 0.5, 0.9], [5.0, 6.0, 7.0], [9.0, 9.0, 9.0]])
    ious = torch.tensor([[0.5, 0.5, 0.5], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0]])
    matched, gt = dynamic_k_matching(cost, ious)
    assert matched.tolist() == [True, False, False] and int(gt[0]) == 0


def test_single_anchor_and_single_candidate() -> None:
    # One anchor inside the GT's box and centre: it is the one positive.
    points, strides = torch.tensor([[16.0, 16.0]]), torch.tensor([8.0])
    gt = torch.tensor([[4.0, 4.0, 28.0, 28.0]])
    pred = torch.tensor([[6.0, 6.0, 26.0, 26.0]])
    scores = torch.tensor([[0.4, 0.2]])
    assigned, iou = align_ota_assign(scores, pred, points, strides, gt, torch.tensor([1]))
    assert assigned.tolist() == [0]
    assert float(iou[0]) == pytest.approx(400 / 576, rel=1e-5)
    expected, _ = reference_align_ota(scores, pred, points, strides, gt, torch.tensor([1]))
    assert expected == [0]


def test_every_parameter_is_passed_through() -> None:
    scores, pred, points, strides, gt, labels = _case(3, 3)
    scores[::7, 0] = 0.02  # below the large eps below, so its clamp matters
    params = {"center_radius": 1.5, "candidate_topk": 3, "cls_weight": 2.5, "iou_weight": 0.5, "eps": 0.04}
    assigned, iou = align_ota_assign(scores, pred, points, strides, gt, labels, **params)
    expected, expected_iou = reference_align_ota(
        scores,
        pred,
        points,
        strides,
        gt,
        labels,
        radius=1.5,
        topk=3,
        cls_weight=2.5,
        iou_weight=0.5,
        eps=0.04,
    )
    assert assigned.tolist() == expected
    assert iou.tolist() == pytest.approx(expected_iou, abs=1e-5)
    default, _ = align_ota_assign(scores, pred, points, strides, gt, labels)
    assert default.tolist() != expected  # the parameters change the assignment here


def test_radius_and_eps_reach_the_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.damo_yolo.assigner as assigner

    seen: dict[str, float] = {}
    masks, class_cost = assigner.candidate_masks, assigner.alignment_class_cost

    def spy_masks(points, strides, gt_boxes, *, center_radius=-1.0):  # type: ignore[no-untyped-def]
        seen["center_radius"] = center_radius
        return masks(points, strides, gt_boxes, center_radius=center_radius)

    def spy_cost(scores, ious, gt_labels, *, eps=-1.0):  # type: ignore[no-untyped-def]
        seen["eps"] = eps
        return class_cost(scores, ious, gt_labels, eps=eps)

    monkeypatch.setattr(assigner, "candidate_masks", spy_masks)
    monkeypatch.setattr(assigner, "alignment_class_cost", spy_cost)
    scores, pred, points, strides, gt, labels = _case(1, 2)
    assigner.align_ota_assign(scores, pred, points, strides, gt, labels, center_radius=1.75, eps=0.01)
    assert seen == {"center_radius": 1.75, "eps": 0.01}


def test_two_conflicted_anchors_resolve_row_by_row() -> None:
    # Both GTs take anchors 0 and 1 (k = 2 each); anchor 0 is cheaper for GT 0, anchor 1 for GT 1.
    cost = torch.tensor([[0.1, 0.5], [0.9, 0.2], [9.0, 9.0]])
    ious = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    matched, gt = dynamic_k_matching(cost, ious)
    assert matched.tolist() == [True, True, False]
    assert gt[:2].tolist() == [0, 1]
