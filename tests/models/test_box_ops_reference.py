"""Box maths against plain-Python loop references, plus hypothesis properties.

The references below work on Python floats one box pair at a time and share no code with
``models.box_ops``: areas, intersections and enclosing boxes are written out from their definitions.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    elementwise_box_iou,
    elementwise_generalized_box_iou,
    generalized_box_iou,
)

EPS = 1e-9  # the implementation's default denominator guard


def ref_area(b: list[float]) -> float:
    width = b[2] - b[0] if b[2] > b[0] else 0.0
    height = b[3] - b[1] if b[3] > b[1] else 0.0
    return width * height


def ref_inter(a: list[float], b: list[float]) -> float:
    left, right = max(a[0], b[0]), min(a[2], b[2])
    top, bottom = max(a[1], b[1]), min(a[3], b[3])
    if right <= left or bottom <= top:
        return 0.0
    return (right - left) * (bottom - top)


def ref_iou(a: list[float], b: list[float]) -> float:
    union = ref_area(a) + ref_area(b) - ref_inter(a, b)
    return ref_inter(a, b) / (union + EPS)


def ref_giou(a: list[float], b: list[float]) -> float:
    union = ref_area(a) + ref_area(b) - ref_inter(a, b)
    hull_w = max(a[2], b[2]) - min(a[0], b[0])
    hull_h = max(a[3], b[3]) - min(a[1], b[1])
    hull = max(hull_w, 0.0) * max(hull_h, 0.0)
    return ref_iou(a, b) - (hull - union) / (hull + EPS)


def _random_xyxy(n: int, gen: torch.Generator, *, degenerate: bool = False) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 100
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 60
    if degenerate:
        # Zero-width, zero-height and point boxes among ordinary ones.
        wh[0::3, 0] = 0
        wh[1::3, 1] = 0
        wh[2::5] = 0
    return torch.cat((xy, xy + wh), dim=1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("degenerate", [False, True])
def test_pairwise_iou_and_giou_equal_loops(seed: int, degenerate: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    a = _random_xyxy(9, gen, degenerate=degenerate)
    b = _random_xyxy(7, gen, degenerate=degenerate)
    b[0] = a[0]  # an identical pair
    b[1] = a[1] + torch.tensor([200.0, 0, 200, 0], dtype=torch.float64)  # a disjoint pair
    iou, union = box_iou(a, b)
    giou = generalized_box_iou(a, b)
    al, bl = a.tolist(), b.tolist()
    for i in range(len(al)):
        for j in range(len(bl)):
            expected_union = ref_area(al[i]) + ref_area(bl[j]) - ref_inter(al[i], bl[j])
            assert float(union[i, j]) == pytest.approx(expected_union, rel=1e-12, abs=1e-12)
            assert float(iou[i, j]) == pytest.approx(ref_iou(al[i], bl[j]), rel=1e-9, abs=1e-12)
            assert float(giou[i, j]) == pytest.approx(ref_giou(al[i], bl[j]), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_elementwise_iou_and_giou_equal_loops(seed: int) -> None:
    gen = torch.Generator().manual_seed(10 + seed)
    a = _random_xyxy(12, gen, degenerate=seed == 2)
    b = _random_xyxy(12, gen, degenerate=seed == 2)
    b[3] = a[3]
    iou, union = elementwise_box_iou(a, b)
    giou = elementwise_generalized_box_iou(a, b)
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        assert float(union[i]) == pytest.approx(ref_area(x) + ref_area(y) - ref_inter(x, y), abs=1e-12)
        assert float(iou[i]) == pytest.approx(ref_iou(x, y), rel=1e-9, abs=1e-12)
        assert float(giou[i]) == pytest.approx(ref_giou(x, y), rel=1e-9, abs=1e-12)
    # Leading batch dimensions are kept.
    assert elementwise_generalized_box_iou(a.reshape(3, 4, 4), b.reshape(3, 4, 4)).shape == (3, 4)


def test_hand_worked_iou_giou() -> None:
    a = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    b = torch.tensor([[2.0, 2.0, 6.0, 6.0]])  # inter 4, union 28, hull 36
    iou, union = box_iou(a, b)
    assert float(iou) == pytest.approx(4 / 28)
    assert float(union) == pytest.approx(28.0)
    assert float(generalized_box_iou(a, b)) == pytest.approx(4 / 28 - 8 / 36)
    far = torch.tensor([[10.0, 0.0, 14.0, 4.0]])  # disjoint: inter 0, union 32, hull 56
    assert float(generalized_box_iou(a, far)) == pytest.approx(0 - 24 / 56)


def test_area_counts_negative_extents_as_zero() -> None:
    boxes = torch.tensor([[0.0, 0, 3, 5], [3.0, 0, 1, 5], [0.0, 5, 3, 1], [2.0, 2, 2, 9]])
    assert box_area(boxes).tolist() == [ref_area(b) for b in boxes.tolist()] == [15.0, 0.0, 0.0, 0.0]


def test_empty_inputs_give_empty_matrices() -> None:
    a = torch.zeros(0, 4)
    b = torch.tensor([[0.0, 0, 1, 1]])
    assert box_iou(a, b)[0].shape == (0, 1)
    assert generalized_box_iou(b, a).shape == (1, 0)
    assert elementwise_generalized_box_iou(a, a).shape == (0,)


def test_conversions_equal_hand_formulas() -> None:
    gen = torch.Generator().manual_seed(3)
    boxes = _random_xyxy(6, gen)
    for b, c, w in zip(
        boxes.tolist(), box_xyxy_to_cxcywh(boxes).tolist(), box_xyxy_to_xywh(boxes).tolist(), strict=True
    ):
        assert c == pytest.approx([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]])
        assert w == pytest.approx([b[0], b[1], b[2] - b[0], b[3] - b[1]])
    cxcywh = torch.tensor([[5.0, 6.0, 4.0, 2.0]])
    assert box_cxcywh_to_xyxy(cxcywh).tolist() == [[3.0, 5.0, 7.0, 7.0]]
    xywh = torch.tensor([[5.0, 6.0, 4.0, 2.0]])
    assert box_xywh_to_xyxy(xywh).tolist() == [[5.0, 6.0, 9.0, 8.0]]


# ---------------------------------------------------------------- hypothesis properties

_coord = st.floats(min_value=-500, max_value=500, allow_nan=False, allow_infinity=False, width=64)
_size = st.floats(min_value=0, max_value=300, allow_nan=False, allow_infinity=False, width=64)
_positive = st.floats(min_value=0.5, max_value=300, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def xyxy_box(draw: st.DrawFn, size: st.SearchStrategy[float] = _size) -> list[float]:
    x, y, w, h = draw(_coord), draw(_coord), draw(size), draw(size)
    return [x, y, x + w, y + h]


_settings = settings(max_examples=50, deadline=None)


@_settings
@given(a=xyxy_box(), b=xyxy_box())
def test_iou_symmetric_bounded_and_matches_loop(a: list[float], b: list[float]) -> None:
    ta, tb = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    ab, ba = float(box_iou(ta, tb)[0]), float(box_iou(tb, ta)[0])
    assert ab == pytest.approx(ba, abs=1e-12)
    assert 0.0 <= ab <= 1.0
    assert ab == pytest.approx(ref_iou(a, b), rel=1e-9, abs=1e-9)


@_settings
@given(a=xyxy_box(), b=xyxy_box())
def test_giou_symmetric_bounded_and_below_iou(a: list[float], b: list[float]) -> None:
    ta, tb = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    g = float(generalized_box_iou(ta, tb)[0, 0])
    assert g == pytest.approx(float(generalized_box_iou(tb, ta)[0, 0]), abs=1e-12)
    assert -1.0 - 1e-9 <= g <= 1.0
    assert g <= float(box_iou(ta, tb)[0][0, 0]) + 1e-12
    assert g == pytest.approx(ref_giou(a, b), rel=1e-9, abs=1e-9)


@_settings
@given(a=xyxy_box(_positive))
def test_self_iou_and_giou_are_one_for_positive_area(a: list[float]) -> None:
    t = torch.tensor([a], dtype=torch.float64)
    # Areas are at least 0.25 here, so the 1e-9 denominator guard moves the result by < 4e-9.
    assert float(box_iou(t, t)[0]) == pytest.approx(1.0, abs=1e-8)
    assert float(generalized_box_iou(t, t)) == pytest.approx(1.0, abs=1e-8)
    assert float(elementwise_generalized_box_iou(t, t)[0]) == pytest.approx(1.0, abs=1e-8)


@_settings
@given(a=xyxy_box())
def test_conversion_round_trips(a: list[float]) -> None:
    t = torch.tensor([a], dtype=torch.float64)
    torch.testing.assert_close(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(t)), t, rtol=0, atol=1e-9)
    torch.testing.assert_close(box_xywh_to_xyxy(box_xyxy_to_xywh(t)), t, rtol=0, atol=1e-9)
    cxcywh = box_xyxy_to_cxcywh(t)
    assert math.isclose(float(box_area(t)[0]), float(cxcywh[0, 2] * cxcywh[0, 3]), rel_tol=1e-9, abs_tol=1e-9)


@_settings
@given(a=xyxy_box(_positive), shift=st.floats(min_value=-100, max_value=100, width=64))
def test_iou_invariant_to_translation(a: list[float], shift: float) -> None:
    t = torch.tensor([a], dtype=torch.float64)
    other = t + torch.tensor([5.0, -3.0, 9.0, 4.0], dtype=torch.float64)
    moved = torch.tensor([shift, -shift, shift, -shift], dtype=torch.float64)
    assert float(box_iou(t, other)[0]) == pytest.approx(float(box_iou(t + moved, other + moved)[0]), abs=1e-9)


@pytest.mark.parametrize("eps", [0.5, 3.0])
def test_eps_is_added_to_every_denominator(eps: float) -> None:
    # A large guard makes its place in each formula visible: IoU = inter / (union + eps) and
    # GIoU = IoU - (hull - union) / (hull + eps).
    gen = torch.Generator().manual_seed(4)
    a = _random_xyxy(5, gen) / 10
    b = _random_xyxy(5, gen) / 10
    iou, _ = box_iou(a, b, eps)
    giou = generalized_box_iou(a, b, eps)
    e_iou, _ = elementwise_box_iou(a, b, eps)
    e_giou = elementwise_generalized_box_iou(a, b, eps)
    for i, x in enumerate(a.tolist()):
        for j, y in enumerate(b.tolist()):
            union = ref_area(x) + ref_area(y) - ref_inter(x, y)
            hull = (max(x[2], y[2]) - min(x[0], y[0])) * (max(x[3], y[3]) - min(x[1], y[1]))
            expected_iou = ref_inter(x, y) / (union + eps)
            expected_giou = expected_iou - (hull - union) / (hull + eps)
            assert float(iou[i, j]) == pytest.approx(expected_iou, rel=1e-9, abs=1e-12)
            assert float(giou[i, j]) == pytest.approx(expected_giou, rel=1e-9, abs=1e-12)
            if i == j:
                assert float(e_iou[i]) == pytest.approx(expected_iou, rel=1e-9, abs=1e-12)
                assert float(e_giou[i]) == pytest.approx(expected_giou, rel=1e-9, abs=1e-12)


def test_default_guard_on_tiny_boxes() -> None:
    # Identical boxes of area exactly 1e-9 (the default guard): IoU = 1e-9 / 2e-9 = 0.5.
    tiny = torch.tensor([[0.0, 0.0, 1e-3, 1e-6]], dtype=torch.float64)
    assert float(box_iou(tiny, tiny)[0]) == pytest.approx(0.5, rel=1e-6)
    assert float(elementwise_box_iou(tiny, tiny)[0]) == pytest.approx(0.5, rel=1e-6)
    # GIoU: hull = union, so the hull term is 0 and GIoU = IoU.
    assert float(generalized_box_iou(tiny, tiny)) == pytest.approx(0.5, rel=1e-6)
    assert float(elementwise_generalized_box_iou(tiny, tiny)[0]) == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize(
    "convert",
    [box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, box_xywh_to_xyxy, box_xyxy_to_xywh],
    ids=lambda f: f.__name__,
)
def test_conversions_work_on_any_leading_shape(convert) -> None:  # type: ignore[no-untyped-def]
    # [..., 4]: a single box [4] and a batch [2, 3, 4] convert box by box like the [N, 4] case.
    gen = torch.Generator().manual_seed(6)
    boxes = _random_xyxy(6, gen)
    flat = convert(boxes)
    assert convert(boxes.reshape(2, 3, 4)).tolist() == flat.reshape(2, 3, 4).tolist()
    assert convert(boxes[2]).tolist() == flat[2].tolist()
    assert box_area(boxes.reshape(2, 3, 4)).tolist() == box_area(boxes).reshape(2, 3).tolist()
