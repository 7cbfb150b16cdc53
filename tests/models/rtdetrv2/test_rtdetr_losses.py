"""RT-DETRv2 pure maths: matcher vs brute force, loss terms, denoising sampling, position embedding."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from models.box_ops import box_cxcywh_to_xyxy
from models.rtdetrv2.criterion import dn_indices
from models.rtdetrv2.decoder import generate_anchors
from models.rtdetrv2.deformable_attention import deformable_attention_core
from models.rtdetrv2.denoising import contrastive_denoising_group
from models.rtdetrv2.losses import giou_box_loss, l1_box_loss, matched_ious, varifocal_loss
from models.rtdetrv2.matcher import hungarian_match, matching_cost
from models.rtdetrv2.position_encoding import sincos_position_embedding_2d


def _random_boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    centre = torch.rand(n, 2, generator=gen) * 0.6 + 0.2
    size = torch.rand(n, 2, generator=gen) * 0.3 + 0.05
    return torch.cat([centre, size], 1)


@pytest.mark.parametrize("seed", range(6))
def test_matcher_equals_brute_force(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    q, c = 5, 4
    n = [1, 3, 4][seed % 3]
    logits = torch.randn(1, q, c, generator=gen)
    boxes = _random_boxes(q, gen)[None]
    target = {"labels": torch.randint(0, c, (n,), generator=gen), "boxes": _random_boxes(n, gen)}
    ((rows, cols),) = hungarian_match(logits, boxes, [target])
    cost = matching_cost(logits[0], boxes[0], target["labels"], target["boxes"])
    best = min(sum(float(cost[perm[j], j]) for j in range(n)) for perm in itertools.permutations(range(q), n))
    assert len(rows) == n and sorted(cols.tolist()) == list(range(n))
    assert math.isclose(float(cost[rows, cols].sum()), best, rel_tol=1e-6, abs_tol=1e-6)


def test_matching_cost_terms() -> None:
    logits = torch.tensor([[2.0, -1.0]])
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    tgt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    cost = matching_cost(logits, boxes, torch.tensor([0]), tgt)
    p = torch.sigmoid(torch.tensor(2.0))
    cls = 0.25 * (1 - p) ** 2 * -torch.log(p + 1e-8) - 0.75 * p**2 * -torch.log(1 - p + 1e-8)
    # Identical boxes: L1 0, GIoU 1.
    torch.testing.assert_close(cost, (2 * cls - 2.0).reshape(1, 1), rtol=1e-5, atol=1e-5)


def test_matcher_handles_images_without_objects() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, generator=gen)
    boxes = _random_boxes(8, gen).reshape(2, 4, 4)
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
        {"labels": torch.tensor([2]), "boxes": _random_boxes(1, gen)},
    ]
    out = hungarian_match(logits, boxes, targets)
    assert out[0][0].numel() == 0 and out[0][1].numel() == 0
    assert out[1][0].numel() == 1 and out[1][1].tolist() == [0]


def test_varifocal_loss_matches_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, generator=gen, requires_grad=True)
    matched = (torch.tensor([0, 1]), torch.tensor([2, 0]))
    labels = torch.tensor([1, 3])
    ious = torch.tensor([0.7, 0.4])
    loss = varifocal_loss(logits, matched, labels, ious, num_boxes=2.0)
    target = torch.zeros(2, 3, 4)
    target[0, 2, 1] = 0.7
    target[1, 0, 3] = 0.4
    onehot = (target > 0).float()
    p = logits.detach().sigmoid()
    weight = 0.75 * p**2 * (1 - onehot) + target
    expected = (
        F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
    ).sum() / 2.0
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_box_losses() -> None:
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]])
    tgt = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.35, 0.3, 0.1, 0.2]])
    torch.testing.assert_close(l1_box_loss(pred, tgt, num_boxes=2.0), torch.tensor(0.15 / 2))
    assert float(giou_box_loss(pred[:1], tgt[:1], num_boxes=1.0)) == pytest.approx(0.0, abs=1e-6)
    # Second pair: pred [.25,.25,.35,.35], tgt [.3,.2,.4,.4] xyxy: inter .05*.1, union .025, hull .15*.2
    iou = 0.005 / 0.025
    enclosing = 0.15 * 0.2
    giou = iou - (enclosing - 0.025) / enclosing
    assert float(giou_box_loss(pred[1:], tgt[1:], num_boxes=1.0)) == pytest.approx(1 - giou, rel=1e-5)
    assert matched_ious(pred, tgt).tolist() == pytest.approx([1.0, iou], rel=1e-5)
    empty = torch.zeros(0, 4)
    assert float(l1_box_loss(empty, empty, num_boxes=1.0)) == 0.0
    assert float(giou_box_loss(empty, empty, num_boxes=1.0)) == 0.0


def test_contrastive_denoising_group_structure() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = [torch.tensor([0, 1, 2]), torch.tensor([4])]
    boxes = [_random_boxes(3, gen), _random_boxes(1, gen)]
    dn = contrastive_denoising_group(
        labels, boxes, num_classes=5, num_queries=10, num_denoising=10, generator=gen
    )
    assert dn is not None
    assert dn.num_groups == 3 and dn.num_denoising == 2 * 3 * 3
    assert dn.labels.shape == (2, 18) and dn.box_logits.shape == (2, 18, 4)
    # Padding slots keep the padding label; image 1 has 1 GT, so 2 of 3 slots per half are padding.
    assert (dn.labels[1].reshape(6, 3)[:, 1:] == 5).all()
    assert [p.tolist() for p in dn.positive_idx] == [[0, 1, 2, 6, 7, 8, 12, 13, 14], [0, 6, 12]]
    mask = dn.attn_mask
    assert mask.shape == (28, 28)
    assert mask[18:, :18].all() and not mask[18:, 18:].any()  # matching queries never see DN
    for g in range(3):
        block = slice(6 * g, 6 * (g + 1))
        assert not mask[block, block].any()  # a group sees itself
        others = [i for i in range(18) if not 6 * g <= i < 6 * (g + 1)]
        assert mask[block][:, others].all()  # and no other group
    assert not mask[:18, 18:].any()  # DN queries see the matching queries
    # Noise: positive copies stay within half a box of the GT corners, negatives within a full box.
    noised = box_cxcywh_to_xyxy(dn.box_logits.sigmoid()[0].reshape(3, 2, 3, 4))
    gt = box_cxcywh_to_xyxy(boxes[0])
    half = boxes[0][:, 2:].repeat(1, 2) * 0.5
    assert ((noised[:, 0] - gt).abs() <= half + 1e-4).all()
    assert ((noised[:, 1] - gt).abs() <= 2 * half + 1e-4).all()
    indices = dn_indices(dn.positive_idx, [{"labels": t} for t in labels], num_groups=dn.num_groups)
    assert indices[0][1].tolist() == [0, 1, 2] * 3 and indices[1][1].tolist() == [0, 0, 0]


def test_denoising_none_without_objects_and_label_noise_rate() -> None:
    empty = [torch.zeros(0, dtype=torch.int64)] * 2
    assert contrastive_denoising_group(empty, [torch.zeros(0, 4)] * 2, num_classes=3, num_queries=5) is None
    gen = torch.Generator().manual_seed(0)
    labels = [torch.zeros(50, dtype=torch.int64)]
    dn = contrastive_denoising_group(
        labels, [_random_boxes(50, gen)], num_classes=80, num_queries=5, num_denoising=2000, generator=gen
    )
    flipped = float((dn.labels != 0).float().mean())
    assert 0.2 < flipped < 0.3  # 0.5 * 0.5 flip probability (a flip may land on class 0: ~1/80)


def test_anchor_generation() -> None:
    anchors, valid = generate_anchors([(2, 3)])
    assert anchors.shape == (1, 6, 4)
    centres = anchors[0, :, :2].sigmoid()
    torch.testing.assert_close(centres[1], torch.tensor([1.5 / 3, 0.5 / 2]))
    torch.testing.assert_close(anchors[0, 0, 2:].sigmoid(), torch.tensor([0.05, 0.05]))
    assert valid.all()


def test_position_embedding_order() -> None:
    pos = sincos_position_embedding_2d(4, 4, embed_dim=16)[0]
    assert pos.shape == (16, 16)
    rows = pos.reshape(4, 4, 16)  # tokens flattened row-major: [row, col]
    # First half depends only on the row, second half only on the column (upstream's order).
    assert torch.allclose(rows[:, :1, :8].expand(4, 4, 8), rows[:, :, :8])
    assert torch.allclose(rows[:1, :, 8:].expand(4, 4, 8), rows[:, :, 8:])
    # Token 5 = row 1, column 1: sin(1 * omega_k) with omega_k = 10000 ** (-k / 4).
    omega = torch.tensor([1.0, 10000**-0.25, 10000**-0.5, 10000**-0.75])
    torch.testing.assert_close(pos[5, :4], omega.sin())
    torch.testing.assert_close(pos[6, 12:], (2 * omega).cos())  # column 2


def test_deformable_sampling_bilinear_and_discrete() -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 6), (2, 3)]
    heads, dim, q = 2, 3, 5
    value = torch.randn(1, 4 * 6 + 2 * 3, heads, dim, generator=gen)
    centres, quarters = [], []
    for h, w in shapes:
        ix = torch.randint(0, w, (1, q, heads, 2), generator=gen)
        iy = torch.randint(0, h, (1, q, heads, 2), generator=gen)
        centres.append(torch.stack([(ix + 0.5) / w, (iy + 0.5) / h], -1))
        quarters.append(torch.stack([(ix + 0.25) / w, (iy + 0.25) / h], -1))
    at_centres, at_quarters = torch.cat(centres, 3), torch.cat(quarters, 3)
    weights = torch.rand(1, q, heads, 4, generator=gen).softmax(-1)
    bilinear = deformable_attention_core(value, shapes, at_centres, weights, [2, 2], method="default")
    # Discrete picks trunc(loc * size + 0.5): a quarter pixel in lands on the same pixel.
    discrete = deformable_attention_core(value, shapes, at_quarters, weights, [2, 2], method="discrete")
    assert bilinear.shape == (1, q, heads * dim)
    torch.testing.assert_close(bilinear, discrete, rtol=1e-5, atol=1e-5)
    # Hand check: query 0, head 0 = weighted sum of the picked pixels.
    grids = [value[0, :24, 0].reshape(4, 6, dim), value[0, 24:, 0].reshape(2, 3, dim)]
    expected = torch.zeros(dim)
    for p in range(4):
        level = p // 2
        h, w = shapes[level]
        x, y = at_centres[0, 0, 0, p]
        expected += weights[0, 0, 0, p] * grids[level][int(y * h), int(x * w)]
    torch.testing.assert_close(bilinear[0, 0, :dim], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="method"):
        deformable_attention_core(value, shapes, at_centres, weights, [2, 2], method="nearest")
