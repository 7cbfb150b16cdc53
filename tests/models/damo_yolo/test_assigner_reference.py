"""AlignOTA against a loop reference written from DAMO-YOLO's published rule.

Reference (per image): candidates are anchors strictly inside some GT box or some GT centre square
(radius 2.5 strides), the square tested in upstream's form, (x - (cx - r)) > 0 and ((cx + r) - x) > 0
in float32; cost(a, g) = sum_c BCE(p_c, t_c) * |t_c - p_c|^2 (t = onehot(label) * IoU, BCE with
upstream's ``F.binary_cross_entropy`` semantics: logs floored at -100, scores not clamped)
+ 3 * -log(IoU + 1e-7) + 1e8 * [not (in box g and in centre g)]; GT g takes k_g = max(1, int(sum of
its top-10 IoUs)) anchors chosen as upstream does, ``torch.topk(cost[:, g], k_g, largest=False)``;
an anchor claimed twice goes to its cheapest GT over all GTs (first on a tie). Everything except the
top-k call is computed with Python floats, one pair at a time.
"""

from __future__ import annotations

import math

import numpy as np
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
    """``F.binary_cross_entropy(p, t)``: each log floored at -100 (log 0 = -inf -> -100); log(1 - p)
    taken as log1p(-p), as torch takes it."""
    log_p = max(math.log(p), -100.0) if p > 0 else -100.0
    log_not_p = max(math.log1p(-p), -100.0) if p < 1 else -100.0
    return -(t * log_p + (1 - t) * log_not_p)


def _in_centre_square(x: float, y: float, box: list[float], r: float) -> bool:
    """Upstream's centre test in float32: the square's edges are rounded, then compared with the point."""
    f = np.float32
    cx, cy = (f(box[0]) + f(box[2])) / f(2.0), (f(box[1]) + f(box[3])) / f(2.0)
    left, right, top, bottom = cx - f(r), cx + f(r), cy - f(r), cy + f(r)
    return bool(f(x) - left > 0 and right - f(x) > 0 and f(y) - top > 0 and bottom - f(y) > 0)


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
            in_centre = _in_centre_square(x, y, gts[g], radius * st_[a])
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
                cls += _bce(s, t) * abs(t - s) ** 2
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


# Saturated float32 scores: exactly 0 and 1, one float step inside (2^-24 and 1 - 2^-24) and a
# near-saturated pair, on GT and non-GT classes; IoUs 0, 1 and in between.
SATURATED = [
    [0.0, 1.0, 0.3, 1.0],
    [1.0, 0.0, 0.6, 1.0],
    [1.0 - 2.0**-24, 2.0**-24, 1.0, 0.0],
    [0.9999, 1e-4, 0.0, 1.0],
]


def test_class_cost_with_saturated_scores_equals_upstream_bce_loop() -> None:
    # Upstream's BCE floors each log at -100 where the old clamp to [1e-7, 1 - 1e-7] gave ~16:
    # a score of 1 on a wrong class costs 100, not 16. Written per (anchor, GT, class).
    from models.damo_yolo.assigner import alignment_class_cost

    scores = torch.tensor(SATURATED, dtype=torch.float32)
    ious = torch.tensor([[0.0, 0.7, 1.0], [1.0, 0.4, 0.0], [0.5, 1.0, 0.25], [0.9, 0.0, 0.6]])
    labels = torch.tensor([1, 0, 3])
    cost = alignment_class_cost(scores, ious, labels)
    expected = []
    for n in range(scores.shape[0]):
        row = []
        for g in range(labels.shape[0]):
            total = 0.0
            for c in range(scores.shape[1]):
                s = float(scores[n, c])
                t = float(ious[n, g]) if c == int(labels[g]) else 0.0
                total += _bce(s, t) * (t - s) ** 2
            row.append(total)
        expected.append(row)
    assert torch.isfinite(cost).all()
    # float32 sums of terms up to 100: a few ulps of 300.
    torch.testing.assert_close(cost, torch.tensor(expected), rtol=1e-6, atol=1e-4)
    # Anchor 0, GT 0 (class 1, IoU 0 so target 0): score 1 on classes 1 and 3 costs 100 each.
    assert float(cost[0, 0]) == pytest.approx(100 + 100 + 0.09 * -math.log(0.7), rel=1e-6)


def test_saturated_class_costs_change_the_positive_as_upstream() -> None:
    # Two anchors inside one GT with equal IoU (0.9, so k = 1). Anchor 0 scores exactly 1 on two
    # wrong classes: upstream's floor charges 2 * 100, the old clamp 2 * 15.9. Anchor 1 scores
    # 1 - 1e-6 on five wrong classes: 5 * 13.8 = 69 either way. Upstream picks anchor 1; the
    # clamp picked anchor 0.
    points, strides = torch.tensor([[16.0, 16.0], [24.0, 16.0]]), torch.tensor([8.0, 8.0])
    gt = torch.tensor([[0.0, 0.0, 40.0, 32.0]])
    pred = torch.tensor([[0.0, 0.0, 36.0, 32.0], [4.0, 0.0, 40.0, 32.0]])  # IoU 0.9 each
    near = 1 - 1e-6
    scores = torch.tensor([[0.5, 1.0, 1.0, 0.0, 0.0, 0.0], [0.5, near, near, near, near, near]])
    assigned, _ = align_ota_assign(scores, pred, points, strides, gt, torch.tensor([0]))
    expected, _ = reference_align_ota(scores, pred, points, strides, gt, torch.tensor([0]))
    assert assigned.tolist() == expected == [-1, 0]


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


def test_radius_reaches_the_centre_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.damo_yolo.assigner as assigner

    seen: dict[str, float] = {}
    masks = assigner.candidate_masks

    def spy_masks(points, strides, gt_boxes, *, center_radius=-1.0):  # type: ignore[no-untyped-def]
        seen["center_radius"] = center_radius
        return masks(points, strides, gt_boxes, center_radius=center_radius)

    monkeypatch.setattr(assigner, "candidate_masks", spy_masks)
    scores, pred, points, strides, gt, labels = _case(1, 2)
    assigner.align_ota_assign(scores, pred, points, strides, gt, labels, center_radius=1.75, eps=0.01)
    assert seen == {"center_radius": 1.75}


def test_eps_enters_the_iou_cost_only() -> None:
    # Two anchors inside one GT, k = 1. Anchor 0's box misses the GT (IoU 0, so class target 0) and
    # it scores 0.01; anchor 1's box overlaps a little (IoU 0.04) and it scores 0.9, far from its
    # target 0.04. eps = 1e-7: the IoU cost 3 * -log(eps) = 48 of anchor 0 dominates, anchor 1
    # wins. eps = 1: both IoU costs are ~0, the class cost picks anchor 0.
    points, strides = torch.tensor([[16.0, 16.0], [24.0, 16.0]]), torch.tensor([8.0, 8.0])
    gt = torch.tensor([[0.0, 0.0, 40.0, 32.0]])
    pred = torch.tensor([[100.0, 100.0, 110.0, 110.0], [38.0, 0.0, 50.0, 32.0]])
    scores = torch.tensor([[0.01, 0.1], [0.9, 0.1]])
    labels = torch.tensor([0])
    for eps, winner in ((1e-7, 1), (1.0, 0)):
        assigned, _ = align_ota_assign(scores, pred, points, strides, gt, labels, eps=eps)
        expected, _ = reference_align_ota(scores, pred, points, strides, gt, labels, eps=eps)
        assert assigned.tolist() == expected, eps
        assert expected.index(0) == winner, eps


def test_two_conflicted_anchors_resolve_row_by_row() -> None:
    # Both GTs take anchors 0 and 1 (k = 2 each); anchor 0 is cheaper for GT 0, anchor 1 for GT 1.
    cost = torch.tensor([[0.1, 0.5], [0.9, 0.2], [9.0, 9.0]])
    ious = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    matched, gt = dynamic_k_matching(cost, ious)
    assert matched.tolist() == [True, True, False]
    assert gt[:2].tolist() == [0, 1]


def _upstream_masks(
    points: torch.Tensor, strides: torch.Tensor, gt: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Upstream's in-box and centre-square tests, as differences > 0 in float32: [A, G] each."""
    x, y, s = points[:, 0:1], points[:, 1:2], strides[:, None]
    in_box = torch.stack((x - gt[:, 0], y - gt[:, 1], gt[:, 2] - x, gt[:, 3] - y)).min(0).values > 0
    cx, cy = (gt[:, 0] + gt[:, 2]) / 2.0, (gt[:, 1] + gt[:, 3]) / 2.0
    deltas = (x - (cx - 2.5 * s), y - (cy - 2.5 * s), (cx + 2.5 * s) - x, (cy + 2.5 * s) - y)
    in_centre = torch.stack(deltas).min(0).values > 0
    return in_box, in_centre


def _edge_case(seed: int, num_gt: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GT boxes with non-integer float32 centres; for each, 12 points on the centre square's four
    edges (upstream's rounded cx -/+ r, cy -/+ r) and one float step either side (torch.nextafter),
    the other coordinate at the centre. Half the boxes are wider than the square (the edge points
    lie in the box: ``in_both`` sees the square test), half narrower (only ``candidate`` does)."""
    gen = torch.Generator().manual_seed(seed)
    strides = torch.tensor([8.0, 16.0, 32.0])[torch.randint(3, (num_gt,), generator=gen)]
    centre = torch.rand(num_gt, 2, generator=gen) * 600 + 20
    half = 2.5 * strides[:, None] * torch.where(torch.arange(num_gt)[:, None] % 2 == 0, 1.5, 0.5)
    half = half * (1 + torch.rand(num_gt, 2, generator=gen) * 0.1)
    gt = torch.cat((centre - half, centre + half), dim=1)
    cx, cy = (gt[:, 0] + gt[:, 2]) / 2.0, (gt[:, 1] + gt[:, 3]) / 2.0
    r = 2.5 * strides
    points, point_strides = [], []
    for g in range(num_gt):
        for edge, is_x in (
            (cx[g] - r[g], True),
            (cx[g] + r[g], True),
            (cy[g] - r[g], False),
            (cy[g] + r[g], False),
        ):
            for v in (torch.nextafter(edge, edge - 1), edge, torch.nextafter(edge, edge + 1)):
                points.append(torch.stack((v, cy[g]) if is_x else (cx[g], v)))
                point_strides.append(strides[g])
    return torch.stack(points), torch.stack(point_strides), gt


@pytest.mark.parametrize("seed", range(3))
def test_centre_square_edges_to_one_float_step_equal_upstream_form(seed: int) -> None:
    from models.damo_yolo.assigner import candidate_masks

    points, strides, gt = _edge_case(seed)
    candidate, in_both = candidate_masks(points, strides, gt)
    in_box, in_centre = _upstream_masks(points, strides, gt)
    assert torch.equal(in_both, in_box & in_centre)
    assert torch.equal(candidate, (in_box | in_centre).any(dim=1))
    # The case discriminates: on the edge itself the point is outside, one step inward inside, and
    # the |x - cx| < r form disagrees with upstream's on some of these points.
    own = torch.arange(points.shape[0]) // 12
    on_own = in_centre[torch.arange(points.shape[0]), own].reshape(-1, 4, 3)
    assert on_own[:, :, 1].sum() == 0
    assert (on_own[:, :, 0].int() + on_own[:, :, 2].int() == 1).all()
    x, y, s = points[:, 0:1], points[:, 1:2], 2.5 * strides[:, None]
    cx, cy = (gt[:, 0] + gt[:, 2]) / 2.0, (gt[:, 1] + gt[:, 3]) / 2.0
    abs_form = ((x - cx).abs() < s) & ((y - cy).abs() < s)
    assert int((abs_form != in_centre).sum()) > 0
