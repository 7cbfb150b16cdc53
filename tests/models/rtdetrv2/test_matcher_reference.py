"""Hungarian matcher against a loop-computed cost and a brute force over permutations.

The reference cost is RT-DETRv2's (``HungarianMatcher`` with ``use_focal_loss``), written out per
(query, target) pair with Python floats: p = sigmoid(logit of the target's class),
class = alpha (1-p)^gamma (-log(p + 1e-8)) - (1-alpha) p^gamma (-log(1-p + 1e-8)),
L1 = sum of |cxcywh differences|, GIoU on the xyxy boxes; cost = 2 class + 5 L1 - 2 GIoU.
"""

from __future__ import annotations

import itertools
import math

import pytest
import scipy.optimize  # noqa: F401  (imported once at collection: forked mutmut workers reuse it)
import torch

from models.rtdetrv2.matcher import hungarian_match, matching_cost


def _xyxy(b: list[float]) -> list[float]:
    return [b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2]


def _giou(a: list[float], b: list[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def reference_cost(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    tgt_boxes: torch.Tensor,
    *,
    w_class: float = 2.0,
    w_bbox: float = 5.0,
    w_giou: float = 2.0,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> list[list[float]]:
    out = []
    for q in range(logits.shape[0]):
        row = []
        for n in range(labels.shape[0]):
            p = 1 / (1 + math.exp(-float(logits[q, int(labels[n])])))
            pos = alpha * (1 - p) ** gamma * -math.log(p + 1e-8)
            neg = (1 - alpha) * p**gamma * -math.log(1 - p + 1e-8)
            a, b = boxes[q].tolist(), tgt_boxes[n].tolist()
            l1 = sum(abs(x - y) for x, y in zip(a, b, strict=True))
            row.append(w_class * (pos - neg) + w_bbox * l1 - w_giou * _giou(_xyxy(a), _xyxy(b)))
        out.append(row)
    return out


def _random_cxcywh(n: int, gen: torch.Generator) -> torch.Tensor:
    centre = torch.rand(n, 2, generator=gen) * 0.6 + 0.2
    size = torch.rand(n, 2, generator=gen) * 0.3 + 0.05
    return torch.cat([centre, size], 1)


def _brute_force(cost: list[list[float]]) -> tuple[float, list[tuple[int, int]]]:
    """Minimum total cost over all one-to-one assignments of min(Q, N) pairs."""
    q, n = len(cost), len(cost[0])
    best: tuple[float, list[tuple[int, int]]] = (math.inf, [])
    if n <= q:
        for perm in itertools.permutations(range(q), n):
            total = sum(cost[perm[j]][j] for j in range(n))
            if total < best[0]:
                best = (total, sorted((perm[j], j) for j in range(n)))
    else:
        for perm in itertools.permutations(range(n), q):
            total = sum(cost[i][perm[i]] for i in range(q))
            if total < best[0]:
                best = (total, [(i, perm[i]) for i in range(q)])
    return best


@pytest.mark.parametrize("seed", range(4))
def test_cost_equals_loop_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 5, generator=gen) * 2
    boxes = _random_cxcywh(6, gen)
    labels = torch.randint(0, 5, (4,), generator=gen)
    tgt = _random_cxcywh(4, gen)
    cost = matching_cost(logits, boxes, labels, tgt)
    assert cost.tolist() == [
        pytest.approx(r, rel=1e-5, abs=1e-5) for r in reference_cost(logits, boxes, labels, tgt)
    ]


def test_cost_passes_every_weight_through() -> None:
    gen = torch.Generator().manual_seed(7)
    logits, boxes = torch.randn(3, 4, generator=gen), _random_cxcywh(3, gen)
    labels, tgt = torch.tensor([1, 3]), _random_cxcywh(2, gen)
    kw = {"w_class": 0.7, "w_bbox": 1.3, "w_giou": 3.1, "alpha": 0.4, "gamma": 1.5}
    cost = matching_cost(
        logits, boxes, labels, tgt, cost_class=0.7, cost_bbox=1.3, cost_giou=3.1, alpha=0.4, gamma=1.5
    )
    expected = reference_cost(logits, boxes, labels, tgt, **kw)
    assert cost.tolist() == [pytest.approx(r, rel=1e-5, abs=1e-5) for r in expected]


def test_cost_hand_worked_pair() -> None:
    # logit 0 -> p = 0.5: class = 0.25*0.25*ln2 - 0.75*0.25*ln2 = -0.125 ln2.
    # boxes (0.5,0.5,0.2,0.2) vs (0.6,0.5,0.2,0.4): L1 = 0.1 + 0.2 = 0.3.
    # xyxy (0.4,0.4,0.6,0.6) vs (0.5,0.3,0.7,0.7): inter 0.1*0.2 = 0.02, union 0.04+0.08-0.02 = 0.1,
    # hull 0.3*0.4 = 0.12 -> GIoU = 0.2 - 0.02/0.12.
    cost = matching_cost(
        torch.zeros(1, 2),
        torch.tensor([[0.5, 0.5, 0.2, 0.2]]),
        torch.tensor([1]),
        torch.tensor([[0.6, 0.5, 0.2, 0.4]]),
    )
    ln2 = math.log(2)
    expected = 2 * (-0.125 * ln2) + 5 * 0.3 - 2 * (0.2 - 0.02 / 0.12)
    assert float(cost) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_assignment_equals_brute_force_over_loop_cost(seed: int) -> None:
    gen = torch.Generator().manual_seed(100 + seed)
    q, c = 5, 4
    n = [1, 2, 3, 5, 6][seed % 5]
    logits = torch.randn(1, q, c, generator=gen) * 2
    boxes = _random_cxcywh(q, gen)[None]
    labels = torch.randint(0, c, (n,), generator=gen)
    tgt = _random_cxcywh(n, gen)
    if seed == 3:
        tgt[0, 2] = 0.0  # a degenerate (zero-width) target
    ((rows, cols),) = hungarian_match(logits, boxes, [{"labels": labels, "boxes": tgt}])
    cost = reference_cost(logits[0], boxes[0], labels, tgt)
    best, pairs = _brute_force(cost)
    assert len(rows) == min(q, n)
    assert rows.tolist() == sorted(rows.tolist())  # by query index
    got = list(zip(rows.tolist(), cols.tolist(), strict=True))
    assert len({r for r, _ in got}) == len(got) and len({c for _, c in got}) == len(got)
    assert sum(cost[r][c] for r, c in got) == pytest.approx(best, rel=1e-6, abs=1e-6)
    assert got == pairs  # random costs: the optimum is unique


def test_l1_term_decides_when_class_and_giou_tie() -> None:
    # Both queries have the same logits and lie fully inside the target with the same size, so their
    # GIoU is the same area ratio (0.01 / 0.16); only L1 prefers the centred query 1. Without the L1
    # term the tie would go to query 0.
    logits = torch.zeros(1, 2, 3)
    boxes = torch.tensor([[[0.4, 0.4, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1]]])
    tgt = torch.tensor([[0.5, 0.5, 0.4, 0.4]])
    ((rows, cols),) = hungarian_match(logits, boxes, [{"labels": torch.tensor([2]), "boxes": tgt}])
    assert rows.tolist() == [1] and cols.tolist() == [0]
    cost = matching_cost(logits[0], boxes[0], torch.tensor([2]), tgt)
    assert float(cost[0, 0] - cost[1, 0]) == pytest.approx(5 * 0.2, rel=1e-5)


def test_empty_and_nonfinite_images() -> None:
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 2, generator=gen)
    boxes = _random_cxcywh(6, gen).reshape(2, 3, 4)
    boxes[1, 0] = float("nan")  # query 0 of image 1 is non-finite: never the best match
    tgt = boxes[1, 0:1].clone()
    tgt[0] = torch.tensor([0.5, 0.5, 0.2, 0.2])
    out = hungarian_match(
        logits,
        boxes,
        [
            {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
            {"labels": torch.tensor([1]), "boxes": tgt},
        ],
    )
    assert out[0][0].tolist() == [] and out[0][1].tolist() == []
    assert out[0][0].dtype == out[0][1].dtype == torch.int64
    assert out[1][1].tolist() == [0] and out[1][0].tolist() != [0]
    cost = reference_cost(logits[1, 1:], boxes[1, 1:], torch.tensor([1]), tgt)
    assert out[1][0].tolist() == [1 + min(range(2), key=lambda i: cost[i][0])]


def test_cost_stays_finite_for_saturated_logits() -> None:
    # sigmoid(30) is 1.0 in float32, so -log(1 - p) is finite only thanks to the 1e-8 guard (and
    # -log(p) likewise for -30): both guards are part of the published cost.
    logits = torch.tensor([[30.0, -30.0], [-30.0, 30.0]])
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.2, 0.3]])
    labels = torch.tensor([0, 1])
    cost = matching_cost(logits, boxes, labels, boxes)
    assert torch.isfinite(cost).all()
    expected = reference_cost(logits, boxes, labels, boxes)
    assert cost.tolist() == [pytest.approx(r, rel=1e-4, abs=1e-4) for r in expected]
    # The class term alone, by hand: p = 1 -> -(0.75 * 1 * -ln(1e-8)); p = 0 -> 0.25 * -ln(1e-8).
    ln = -math.log(1e-8)
    class_only = matching_cost(logits, boxes, labels, boxes, cost_bbox=0.0, cost_giou=0.0, cost_class=1.0)
    assert float(class_only[0, 0]) == pytest.approx(-0.75 * ln, rel=1e-4)
    assert float(class_only[0, 1]) == pytest.approx(0.25 * ln, rel=1e-4)
