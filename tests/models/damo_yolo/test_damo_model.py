"""DAMO-YOLO architecture: shapes, losses, gradients, RepConv fusion, published counts (every variant)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import damo_yolo
from models.damo_yolo.layers import RepConv

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "checkpoints"
NAMES = list(damo_yolo.VARIANTS)
PUBLISHED = [n for n in NAMES if damo_yolo.VARIANTS[n].published is not None]
SIZE = 128


def _build(name: str, num_classes: int = 80) -> torch.nn.Module:
    torch.manual_seed(0)
    return damo_yolo.build_model(damo_yolo.VARIANTS[name], num_classes=num_classes)


def _images(batch: int = 2, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 255.0


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[8.0, 12.0, 70.0, 90.0], [60.0, 40.0, 120.0, 100.0]]),
            "labels": torch.tensor([3, 7]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_same_in_train_and_eval(name: str) -> None:
    model = _build(name, num_classes=7)
    anchors = sum((SIZE // s) ** 2 for s in (8, 16, 32))
    shapes = {}
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(_images())
        shapes[train] = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes[True] == shapes[False]
    assert shapes[True] == {
        "cls_logits": (2, anchors, 7),
        "scores": (2, anchors, 7),
        "boxes": (2, anchors, 4),
        "reg_logits": (2, anchors, 4, 17),
        "anchor_points": (anchors, 2),
        "strides": (anchors,),
    }
    assert float(out["scores"].min()) >= 0.0 and float(out["scores"].max()) <= 1.0
    torch.testing.assert_close(out["scores"], out["cls_logits"].sigmoid(), rtol=0, atol=0)
    # First anchor of the stride-32 level sits at the origin and the last one at (W-32, H-32).
    assert out["anchor_points"][-1].tolist() == [SIZE - 32.0, SIZE - 32.0]


def test_rejects_size_not_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        _build("damo_yolo_tiny")(torch.zeros(1, 3, 100, 128))


@pytest.mark.parametrize("name", NAMES)
def test_losses_finite_and_backward_reaches_every_parameter(name: str) -> None:
    model = _build(name).train()
    criterion = damo_yolo.build_criterion(damo_yolo.VARIANTS[name], num_classes=80)
    losses = criterion(model(_images()), _targets(), image_size=(SIZE, SIZE))
    assert set(losses) == {"loss", "loss_qfl", "loss_giou", "loss_dfl"}
    for key, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), key
    assert losses["loss_giou"].detach().item() > 0 and losses["loss_dfl"].detach().item() > 0
    losses["loss"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []


def test_loss_on_batch_without_boxes_is_finite_and_backpropagates() -> None:
    model = _build("damo_yolo_tiny").train()
    criterion = damo_yolo.build_criterion(damo_yolo.VARIANTS["damo_yolo_tiny"])
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    losses = criterion(model(_images()), empty, image_size=(SIZE, SIZE))
    assert float(losses["loss_giou"]) == 0.0 and float(losses["loss_dfl"]) == 0.0
    assert torch.isfinite(losses["loss"]) and float(losses["loss_qfl"]) > 0
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_deploy_fuses_every_repconv_and_keeps_outputs(name: str) -> None:
    model = _build(name)
    _randomise_bn(model)
    model.eval()
    images = _images(batch=1)
    with torch.no_grad():
        ref = model(images)
        n_rep = sum(isinstance(m, RepConv) for m in model.modules())
        model.deploy()
        model.deploy()  # idempotent
        fused = model(images)
    assert model.deployed and n_rep > 0
    assert not any(k.endswith(("rbr_dense.conv.weight", "rbr_1x1.conv.weight")) for k in model.state_dict())
    assert sum(k.endswith("rbr_reparam.weight") for k in model.state_dict()) == n_rep
    for key in ("scores", "boxes"):
        torch.testing.assert_close(fused[key], ref[key], rtol=1e-4, atol=1e-4 * float(ref[key].abs().max()))


def test_repconv_counts_match_spec() -> None:
    expected = {"damo_yolo_t": 24, "damo_yolo_s": 27, "damo_yolo_m": 33, "damo_yolo_l": 48}
    for name, count in expected.items():
        assert sum(isinstance(m, RepConv) for m in _build(name).modules()) == count, name


@pytest.mark.parametrize("name", PUBLISHED)
def test_deploy_form_params_equal_upstream(name: str) -> None:
    variant = damo_yolo.VARIANTS[name]
    model = _build(name)
    train_form = sum(p.numel() for p in model.parameters())
    assert damo_yolo.count_params(model) == variant.published.params_exact
    # count_params works on a copy: the model itself stays in train form.
    assert sum(p.numel() for p in model.parameters()) == train_form > variant.published.params_exact
    assert round(variant.published.params_exact / 1e6, 1) == variant.published.params_m


@pytest.mark.parametrize("name", PUBLISHED)
def test_gflops_at_640_within_one_percent(name: str) -> None:
    variant = damo_yolo.VARIANTS[name]
    gflops = damo_yolo.count_gflops(_build(name), image_size=640)
    assert abs(gflops - variant.published.gflops) / variant.published.gflops < 0.01, gflops


@pytest.mark.parametrize("name", PUBLISHED)
def test_train_form_keys_equal_official_layout(name: str) -> None:
    tensors = json.loads((FIXTURES / f"{name}.json").read_text())["tensors"]
    state = _build(name).state_dict()
    assert list(state) == list(tensors)
    for key, spec in tensors.items():
        assert list(state[key].shape) == spec["shape"], key
        assert str(state[key].dtype).removeprefix("torch.") == spec["dtype"], key


def test_variant_rows() -> None:
    rows = damo_yolo.VARIANTS
    assert set(rows) == {"damo_yolo_t", "damo_yolo_s", "damo_yolo_m", "damo_yolo_l", "damo_yolo_tiny"}
    assert [rows[n].published.map_50_95 for n in PUBLISHED] == [42.0, 46.0, 49.2, 50.8]
    assert [rows[n].published.t4_ms_table for n in PUBLISHED] == [2.32, 3.45, 5.09, 7.18]
    assert rows["damo_yolo_tiny"].published is None
    assert all(
        r.family == "damo_yolo" and r.pixel_scale == 255.0 and r.input_size == 640 for r in rows.values()
    )
