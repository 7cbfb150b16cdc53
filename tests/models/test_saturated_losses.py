"""Both families' losses at saturated logits: finite gradients and the formulas' float64 values.

Logits of +-8, +-17, +-30 and +-1e4 are where a sigmoid rounds to exactly 0 or 1 in float16 / bfloat16
(from ~8.3 / ~6.2) or float32 (from ~16.6). References are numpy float64, written here from the
formulas, with log p = -log(1 + e^-x) and log(1 - p) = -log(1 + e^x) (``np.logaddexp``) so that
float64 itself does not round them away:
- QFL (DAMO-YOLO, upstream ``F.binary_cross_entropy`` on sigmoid scores: logs floored at -100):
  negative class -max(log(1 - p), -100) p^2; positive class
  -(q max(log p, -100) + (1 - q) max(log(1 - p), -100)) |q - p|^2.
- VFL (RT-DETRv2, ``F.binary_cross_entropy_with_logits``, no floor): w (log(1 + e^x) - x t) with
  t = IoU on the matched class, w = alpha p^gamma (1 - onehot) + t.
The criteria run on hand-built raw outputs (a single candidate anchor / a single close query per
image, so the assignment is known) given as float32, float16 and bfloat16 leaves - the dtypes an
autocast forward hands over. One training step per family under CPU autocast checks the same on the
tiny models, including class biases pushed to saturation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import damo_yolo, rtdetrv2
from models.damo_yolo.losses import quality_focal_loss

SATURATED = [8.0, -8.0, 17.0, -17.0, 30.0, -30.0, 1e4, -1e4]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(x))


def ref_qfl(x: np.ndarray, label: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """QFL [N, C] float64 logits -> (loss [N], d loss / d x [N, C]), beta = 2."""
    p = _sigmoid(x)
    log_p, log_not_p = _log_sigmoid(x), _log_sigmoid(-x)
    # d log p / dx = 1 - p and d log(1 - p) / dx = -p, zero where the floor holds.
    d_log_p = np.where(log_p > -100, 1 - p, 0.0)
    d_log_not_p = np.where(log_not_p > -100, -p, 0.0)
    log_p, log_not_p = np.maximum(log_p, -100), np.maximum(log_not_p, -100)
    dp = p * (1 - p)
    loss = -log_not_p * p**2
    grad = -d_log_not_p * p**2 - log_not_p * 2 * p * dp
    for n, c in enumerate(label):
        if c < 0:
            continue
        s, t = p[n, c], q[n]
        bce = -(t * log_p[n, c] + (1 - t) * log_not_p[n, c])
        d_bce = -(t * d_log_p[n, c] + (1 - t) * d_log_not_p[n, c])
        loss[n, c] = bce * (t - s) ** 2
        grad[n, c] = d_bce * (t - s) ** 2 + bce * 2 * (s - t) * dp[n, c]
    return loss.sum(1), grad


def test_qfl_saturated_logits_equal_float64_formula_with_its_gradient() -> None:
    # Every saturated value on a negative class and as the positive class, with quality 0, 0.3, 1.
    rows = []
    for shift in range(len(SATURATED)):
        rows.append(SATURATED[shift:] + SATURATED[:shift])
    x64 = np.array(rows * 3 + [SATURATED], dtype=np.float64)
    n = x64.shape[0]
    label = np.array([r % len(SATURATED) for r in range(n - 1)] + [-1])
    q = np.array([0.0] * 8 + [0.3] * 8 + [1.0] * 8 + [0.0])
    logits = torch.tensor(x64, dtype=torch.float32, requires_grad=True)
    loss = quality_focal_loss(logits, torch.tensor(label), torch.tensor(q, dtype=torch.float32))
    loss.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and torch.isfinite(loss).all()
    expected, expected_grad = ref_qfl(x64, label, q)
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(logits.grad.numpy(), expected_grad, rtol=1e-5, atol=1e-12)
    # A wrong class at logit 30 (p rounds to 1 in float32) is still pushed down: dL/dx = p + 30 d(p^2)/dx ~ 1.
    assert float(logits.grad[0, 4]) == pytest.approx(1.0, rel=1e-6)


# ------------------------------------------------------------------------------- DAMO-YOLO


def _damo_outputs(dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """8 images, 8 classes, 4 anchors of which only anchor 0 lies near the GT [0, 0, 32, 32] (label
    b in image b, so the positive class's logit runs through SATURATED). Leaves in ``dtype``."""
    batch, anchors, classes = 8, 4, 8
    gen = torch.Generator().manual_seed(0)
    cls_logits = torch.tensor(SATURATED).expand(batch, anchors, classes)
    boxes = torch.tensor(
        [[2.0, 3.0, 30.0, 28.0], [190, 190, 210, 210], [300, 10, 330, 40], [5, 300, 40, 330]]
    )
    reg = torch.randn(batch, anchors, 4, 17, generator=gen) * 3
    reg[:, :, :, 0], reg[:, :, :, 5] = 1e4, -1e4  # saturated bin logits; target bins are 2 and 3
    reg[:, 0, 1, 3] = 30.0
    outputs = {
        "cls_logits": cls_logits.to(dtype).clone().requires_grad_(),
        "boxes": boxes.expand(batch, anchors, 4).to(dtype).clone().requires_grad_(),
        "reg_logits": reg.to(dtype).requires_grad_(),
        "anchor_points": torch.tensor([[16.0, 16.0], [200.0, 200.0], [320.0, 24.0], [24.0, 320.0]]),
        "strides": torch.full((anchors,), 8.0),
    }
    outputs["scores"] = outputs["cls_logits"].detach().sigmoid()
    targets = [
        {"boxes": torch.tensor([[0.0, 0.0, 32.0, 32.0]]), "labels": torch.tensor([b])} for b in range(batch)
    ]
    return outputs, targets


def _iou_giou(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union, inter / union - (hull - union) / hull


def ref_damo(outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Upstream's DAMO-YOLO loss in float64 when anchor 0 is each image's only positive."""
    x = outputs["cls_logits"].detach().double().numpy()
    boxes = outputs["boxes"].detach().double().numpy()
    reg = outputs["reg_logits"].detach().double().numpy()
    batch, anchors, classes = x.shape
    qfl = giou = dfl = norm = 0.0
    for b in range(batch):
        gt = targets[b]["boxes"][0].double().numpy()
        label = np.full(anchors, -1)
        label[0] = int(targets[b]["labels"][0])
        iou, g = _iou_giou(boxes[b, 0], gt)
        qfl += ref_qfl(x[b], label, np.full(anchors, iou))[0].sum()
        weight = float(_sigmoid(x[b, 0]).max())
        norm += weight
        giou += (1 - g) * weight
        # DFL at the anchor (16, 16), stride 8: distances to the GT are 2 bins on every side.
        log_soft = reg[b, 0] - np.logaddexp.reduce(reg[b, 0], axis=-1, keepdims=True)
        dfl += -log_soft[:, 2].sum() * weight
    return {"loss_qfl": qfl / batch, "loss_giou": 2.0 * giou / norm, "loss_dfl": 0.25 * dfl / (4 * norm)}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_damo_criterion_saturated_logits_finite_gradients_and_float64_values(dtype: torch.dtype) -> None:
    outputs, targets = _damo_outputs(dtype)
    criterion = damo_yolo.build_criterion(damo_yolo.VARIANTS["damo_yolo_tiny"], num_classes=8)
    losses = criterion(outputs, targets, image_size=(64, 64))
    losses["loss"].backward()
    for key in ("cls_logits", "boxes", "reg_logits"):
        grad = outputs[key].grad
        assert grad is not None and torch.isfinite(grad).all(), key
    expected = ref_damo(outputs, targets)
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-5), key
    assert losses["loss"].item() == pytest.approx(sum(expected.values()), rel=1e-5)
    # A wrong class at logit 30 of a background anchor is still pushed down: d QFL / dx ~ 1, over
    # 8 positives (upstream's float32 sigmoid is 1 there and its gradient 0).
    grad = outputs["cls_logits"].grad
    assert grad is not None and float(grad[0, 1, 4]) == pytest.approx(0.125, rel=1e-3)


# ------------------------------------------------------------------------------- RT-DETRv2


def _rtdetr_outputs(dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """8 images, 3 queries, 8 classes; query 0 sits near the one target (label b in image b), the
    others far away and every query has the same class logits, so query 0 is matched."""
    batch, queries = 8, 3
    logits = torch.tensor(SATURATED).expand(batch, queries, len(SATURATED))
    boxes = torch.tensor([[0.52, 0.45, 0.45, 0.35], [0.1, 0.1, 0.05, 0.05], [0.9, 0.9, 0.05, 0.05]])
    outputs = {
        "pred_logits": logits.to(dtype).clone().requires_grad_(),
        "pred_boxes": boxes.expand(batch, queries, 4).to(dtype).clone().requires_grad_(),
    }
    targets = [
        {"boxes": torch.tensor([[16.0, 16.0, 48.0, 40.0]]), "labels": torch.tensor([b])} for b in range(batch)
    ]
    return outputs, targets


def _xyxy(b: np.ndarray) -> np.ndarray:
    return np.array([b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2])


def ref_rtdetr(outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """RT-DETRv2's weighted loss (VFL 1, L1 5, GIoU 2) in float64 when query 0 matches each target."""
    x = outputs["pred_logits"].detach().double().numpy()
    boxes = outputs["pred_boxes"].detach().double().numpy()
    batch, queries, classes = x.shape
    num_boxes = float(batch)
    vfl = l1 = giou = 0.0
    for b in range(batch):
        tgt_xyxy = targets[b]["boxes"][0].double().numpy() / 64.0
        tgt = np.array([(tgt_xyxy[0] + tgt_xyxy[2]) / 2, (tgt_xyxy[1] + tgt_xyxy[3]) / 2, 0.5, 0.375])
        iou, g = _iou_giou(_xyxy(boxes[b, 0]), tgt_xyxy)
        t = np.zeros((queries, classes))
        t[0, int(targets[b]["labels"][0])] = iou
        onehot = (t > 0).astype(np.float64)
        weight = 0.75 * _sigmoid(x[b]) ** 2 * (1 - onehot) + t
        bce = np.logaddexp(0.0, x[b]) - x[b] * t
        vfl += (weight * bce).sum(1).mean() * queries / num_boxes
        l1 += np.abs(boxes[b, 0] - tgt).sum() / num_boxes
        giou += (1 - g) / num_boxes
    return {"loss_vfl": vfl, "loss_bbox": 5.0 * l1, "loss_giou": 2.0 * giou}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rtdetr_criterion_saturated_logits_finite_gradients_and_float64_values(dtype: torch.dtype) -> None:
    outputs, targets = _rtdetr_outputs(dtype)
    criterion = rtdetrv2.build_criterion(rtdetrv2.VARIANTS["rtdetrv2_tiny"], num_classes=8)
    losses = criterion(outputs, targets, image_size=(64, 64))
    losses["loss"].backward()
    for key in ("pred_logits", "pred_boxes"):
        grad = outputs[key].grad
        assert grad is not None and torch.isfinite(grad).all(), key
    expected = ref_rtdetr(outputs, targets)
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-5), key
    assert losses["loss"].item() == pytest.approx(sum(expected.values()), rel=1e-5)


# ------------------------------------------------------------------------ one AMP training step


def _amp_step(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    images: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """Autocast forward, float32 loss, backward, one SGD step; asserts every gradient is finite and
    the step moved the parameters. Returns the losses."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    with torch.autocast("cpu", dtype=dtype):
        outputs = model(images, targets)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    losses = criterion(outputs, targets, image_size=size)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    optimizer.zero_grad()
    losses["loss"].backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert bad == []
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    return losses


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 60.0, 62.0]]),
            "labels": torch.tensor([2, 0]),
        },
        {"boxes": torch.tensor([[10.0, 10.0, 20.0, 30.0]]), "labels": torch.tensor([4])},
    ]


def _saturate(model: torch.nn.Module, names: tuple[str, ...], value: float) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") and any(k in name for k in names):
                p.fill_(value)


@pytest.mark.parametrize(
    ("dtype", "bias"),
    [(torch.bfloat16, None), (torch.bfloat16, 30.0), (torch.float16, 30.0)],
    ids=["bf16", "bf16-saturated", "fp16-saturated"],
)
def test_damo_one_amp_training_step(dtype: torch.dtype, bias: float | None) -> None:
    torch.manual_seed(0)
    variant = damo_yolo.VARIANTS["damo_yolo_tiny"]
    model = damo_yolo.build_model(variant, num_classes=5).train()
    if bias is not None:
        # Every class logit ~30: the head's own sigmoid scores are exactly 1.0 in this dtype.
        _saturate(model, ("gfl_cls",), bias)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        scores = model(images)["scores"]
    assert scores.dtype == dtype and (bias is None or bool((scores == 1).all()))
    losses = _amp_step(model, damo_yolo.build_criterion(variant, num_classes=5), images, _targets(), dtype)
    assert losses["loss_qfl"].item() > 0 and losses["loss_giou"].item() > 0


@pytest.mark.parametrize(
    ("dtype", "bias"),
    [(torch.bfloat16, None), (torch.bfloat16, 30.0), (torch.float16, 1e4)],
    ids=["bf16", "bf16-saturated", "fp16-saturated"],
)
def test_rtdetr_one_amp_training_step(dtype: torch.dtype, bias: float | None) -> None:
    torch.manual_seed(0)
    variant = rtdetrv2.VARIANTS["rtdetrv2_tiny"]
    model = rtdetrv2.build_model(variant, num_classes=5).train()
    if bias is not None:
        # 1e4 in float16: the logits' float16 sum overflows, which once made the loss NaN.
        _saturate(model, ("score_head",), bias)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    losses = _amp_step(model, rtdetrv2.build_criterion(variant, num_classes=5), images, _targets(), dtype)
    assert losses["loss_vfl"].item() > 0 and losses["loss_bbox"].item() > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rtdetr_box_refinement_backward_finite_at_saturated_boxes(dtype: torch.dtype) -> None:
    # The decoder's "look forward twice" box: sigmoid(delta + inverse_sigmoid(ref)), ref a box
    # coordinate that rounded to exactly 0 or 1 (or one float16 step inside).
    from models.rtdetrv2.layers import inverse_sigmoid

    ref = torch.tensor([0.0, 1.0, 1 - 2**-11, 2**-14, 1e-5, 0.5], dtype=dtype, requires_grad=True)
    delta = torch.full((6,), 0.5, dtype=dtype, requires_grad=True)
    inv = inverse_sigmoid(ref)
    assert inv.dtype == dtype and torch.isfinite(inv).all()
    torch.sigmoid(delta + inv).sum().backward()
    assert ref.grad is not None and torch.isfinite(ref.grad).all()
    assert delta.grad is not None and torch.isfinite(delta.grad).all()
    # The values are the float32 ones: log(x / (1 - x)) with both clamped to >= 1e-5.
    x = ref.detach().double()
    expected = torch.log(x.clamp(min=1e-5) / (1 - x).clamp(min=1e-5))
    torch.testing.assert_close(inv.double(), expected.to(dtype).double(), rtol=1e-2, atol=1e-2)
