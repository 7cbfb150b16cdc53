"""Layer-level facts the released weights depend on: Focus order, box decoding, BN settings, training."""

from __future__ import annotations

import torch

from models import damo_yolo
from models.box_ops import box_iou
from models.damo_yolo.layers import Focus, RepConv


def test_focus_subgrid_order() -> None:
    focus = Focus(1, 4, act="identity")
    focus.conv = torch.nn.Identity()  # look at the space-to-depth result itself
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = focus(x)
    # (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
    assert y[0, :, 0, 0].tolist() == [0.0, 4.0, 1.0, 5.0]
    assert y.shape == (1, 4, 2, 2)


def test_bn_eps_and_momentum_everywhere() -> None:
    model = damo_yolo.build_model(damo_yolo.VARIANTS["damo_yolo_tiny"])
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)


def test_repconv_fuse_matches_branches_with_stride() -> None:
    torch.manual_seed(0)
    conv = RepConv(5, 7, stride=2, act="relu")
    for bn in (conv.rbr_dense.bn, conv.rbr_1x1.bn):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
    conv.eval()
    x = torch.randn(2, 5, 9, 9)
    ref = conv(x)
    conv.fuse()
    assert conv.fused and not hasattr(conv, "rbr_dense")
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)


def test_head_decodes_left_top_right_bottom_times_stride() -> None:
    model = damo_yolo.build_model(damo_yolo.VARIANTS["damo_yolo_tiny"], num_classes=2).eval()
    bins = (2, 3, 4, 5)  # left, top, right, bottom
    with torch.no_grad():
        for conv in model.head.gfl_reg:
            conv.weight.zero_()
            conv.bias.fill_(-50.0)
            for side, b in enumerate(bins):
                conv.bias[side * 17 + b] = 50.0
        out = model(torch.zeros(1, 3, 64, 64))
    points, strides = out["anchor_points"], out["strides"][:, None]
    expected = torch.cat(
        (points - torch.tensor([2.0, 3.0]) * strides, points + torch.tensor([4.0, 5.0]) * strides), 1
    )
    torch.testing.assert_close(out["boxes"][0], expected, rtol=0, atol=1e-3)
    # 8x8 + 4x4 + 2x2 anchors, level-major; first stride-16 anchor at the origin.
    assert out["strides"].tolist() == [8.0] * 64 + [16.0] * 16 + [32.0] * 4
    assert out["anchor_points"][64].tolist() == [0.0, 0.0] and out["anchor_points"][1].tolist() == [8.0, 0.0]


def test_a_few_steps_learn_one_box() -> None:
    """The total loss is not monotone (GIoU/DFL are weighted by the growing class scores, as upstream),
    so check what training should achieve: the best-scoring box of the GT class moves onto the GT and
    the absent class is suppressed."""
    torch.manual_seed(0)
    variant = damo_yolo.VARIANTS["damo_yolo_tiny"]
    # eval(): BatchNorm with fixed statistics, so one image of batch 1 gives a steady signal.
    model = damo_yolo.build_model(variant, num_classes=2).eval()
    criterion = damo_yolo.build_criterion(variant, num_classes=2)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    gt = torch.tensor([[10.0, 12.0, 40.0, 54.0]])
    targets = [{"boxes": gt, "labels": torch.tensor([1])}]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    ious, other = [], []
    for _ in range(30):
        out = model(images)
        loss = criterion(out, targets, image_size=(64, 64))["loss"]
        with torch.no_grad():
            best = out["scores"][0, :, 1].argmax()
            ious.append(box_iou(out["boxes"][0, best : best + 1], gt)[0].item())
            other.append(out["scores"][0, :, 0].max().item())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert ious[0] < 0.1 and max(ious[-15:]) > 0.5, ious
    assert other[-1] < 0.5 * other[0], other
