"""RT-DETRv2 forward contract over every variant: shapes, train/eval keys, losses, gradients, deploy."""

from __future__ import annotations

import pytest
import torch

from models import rtdetrv2

ALL = list(rtdetrv2.VARIANTS)
SIZE = 128
NUM_CLASSES = 7


def _params(names: list[str], *, light: set[str]) -> list:
    """Variants outside ``light`` run only with ``-m slow`` (seconds to tens of seconds on 2 cores)."""
    return [n if n in light else pytest.param(n, marks=pytest.mark.slow) for n in names]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0], [30.0, 30.0, 100.0, 120.0], [0, 0, 128, 128]]),
            "labels": torch.tensor([1, 6, 0]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return rtdetrv2.build_model(rtdetrv2.VARIANTS[name], num_classes=NUM_CLASSES)


@pytest.mark.parametrize("name", _params(ALL, light={"rtdetrv2_tiny", "rtdetrv2_s"}))
def test_forward_shapes_train_and_eval(name: str) -> None:
    model = _build(name)
    cfg = rtdetrv2.VARIANTS[name].config
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    q = cfg.num_queries
    model.eval()
    with torch.no_grad():
        out_eval = model(images)
    model.train()
    with torch.no_grad():
        out_train = model(images, _targets())
    assert set(out_eval) == set(out_train)
    for out in (out_eval, out_train):
        assert out["pred_logits"].shape == (2, q, NUM_CLASSES)
        assert out["pred_boxes"].shape == (2, q, 4)
        assert torch.isfinite(out["pred_logits"]).all()
        assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()
        assert out["enc_outputs"][0]["pred_logits"].shape == (2, q, NUM_CLASSES)
    assert out_eval["aux_outputs"] == [] and out_eval["dn_outputs"] == [] and out_eval["dn_meta"] == {}
    assert len(out_train["aux_outputs"]) == cfg.decoder_layers - 1
    assert len(out_train["dn_outputs"]) == cfg.decoder_layers
    groups = out_train["dn_meta"]["num_groups"]
    assert groups == max(1, cfg.num_denoising // 3)
    assert out_train["dn_outputs"][0]["pred_logits"].shape == (2, 2 * 3 * groups, NUM_CLASSES)


def test_training_without_targets_has_no_denoising() -> None:
    model = _build("rtdetrv2_tiny").train()
    out = model(torch.rand(1, 3, SIZE, SIZE))
    assert out["dn_outputs"] == [] and out["dn_meta"] == {}
    assert len(out["aux_outputs"]) == rtdetrv2.VARIANTS["rtdetrv2_tiny"].config.decoder_layers - 1


@pytest.mark.parametrize("name", _params(ALL, light={"rtdetrv2_tiny"}))
def test_losses_finite_and_gradients_reach_every_trainable_parameter(name: str) -> None:
    model = _build(name).train()
    criterion = rtdetrv2.build_criterion(rtdetrv2.VARIANTS[name], num_classes=NUM_CLASSES)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    targets = _targets()
    out = model(images, targets)
    losses = criterion(out, targets, image_size=(SIZE, SIZE))
    assert set(losses) == {"loss", "loss_vfl", "loss_bbox", "loss_giou"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    total = losses["loss_vfl"] + losses["loss_bbox"] + losses["loss_giou"]
    torch.testing.assert_close(losses["loss"], total)
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    frozen_with_grad = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert missing == [] and frozen_with_grad == []
    # Frozen stem of M/L/X: parameters exist but receive no gradient.
    assert any(not p.requires_grad for p in model.parameters()) == rtdetrv2.VARIANTS[name].config.freeze_stem


def test_loss_with_no_objects_in_batch() -> None:
    model = _build("rtdetrv2_tiny").train()
    criterion = rtdetrv2.build_criterion(rtdetrv2.VARIANTS["rtdetrv2_tiny"], num_classes=NUM_CLASSES)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    out = model(torch.rand(2, 3, SIZE, SIZE), empty)
    assert out["dn_outputs"] == []
    losses = criterion(out, empty, image_size=(SIZE, SIZE))
    assert torch.isfinite(losses["loss"]) and losses["loss_vfl"] > 0
    assert float(losses["loss_bbox"].detach()) == 0.0 and float(losses["loss_giou"].detach()) == 0.0
    losses["loss"].backward()
    assert model.decoder.enc_score_head.weight.grad is not None


def test_denoising_lowers_with_clean_targets_more_than_noise() -> None:
    """With box noise off the DN queries start exactly on the GT, so their L1 share must shrink."""
    from dataclasses import replace

    from models.rtdetrv2.detector import build_rtdetrv2

    cfg = rtdetrv2.VARIANTS["rtdetrv2_tiny"].config
    criterion = rtdetrv2.build_criterion(rtdetrv2.VARIANTS["rtdetrv2_tiny"], num_classes=NUM_CLASSES)
    targets = _targets()
    results = {}
    for scale in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_rtdetrv2(replace(cfg, box_noise_scale=scale), num_classes=NUM_CLASSES).train()
        out = model(torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)), targets)
        dn_only = {**out, "aux_outputs": [], "enc_outputs": []}
        no_dn = {**out, "aux_outputs": [], "enc_outputs": [], "dn_outputs": []}
        with torch.no_grad():
            results[scale] = float(
                criterion(dn_only, targets, image_size=(SIZE, SIZE))["loss_bbox"]
                - criterion(no_dn, targets, image_size=(SIZE, SIZE))["loss_bbox"]
            )
    assert results[0.0] < results[1.0]


@pytest.mark.parametrize("name", ["rtdetrv2_tiny", "rtdetrv2_s"])
def test_deploy_fuses_repvgg_with_parity(name: str) -> None:
    model = _build(name)
    # Non-trivial BN statistics so the fusion has something to fold.
    gen = torch.Generator().manual_seed(4)
    for m in model.encoder.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    model.eval()
    images = torch.rand(1, 3, SIZE, SIZE, generator=gen)
    full = name == "rtdetrv2_tiny"
    with torch.no_grad():
        feats = model.backbone(images)
        before = model.encoder(feats)
        out_before = model(images) if full else None
        model.deploy()
        model.deploy()  # idempotent
        after = model.encoder(feats)
        out_after = model(images) if full else None
    assert not model.training
    fused = [m for m in model.modules() if hasattr(m, "conv1") and hasattr(m, "conv") and hasattr(m, "conv2")]
    assert fused and all(m.conv.bias is not None and m.conv.kernel_size == (3, 3) for m in fused)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    if full:
        # Full-model parity (the random-init S model is checked per encoder map only). The decoder's
        # queries come from a top-k over near-tied random-init scores, so two queries may swap places
        # between runs that differ in the last bit (e.g. another thread count): compare the set of
        # queries, each matched to its closest twin, not their order.
        from scipy.optimize import linear_sum_assignment

        for b in range(images.shape[0]):
            before_q = torch.cat([out_before["pred_logits"][b], out_before["pred_boxes"][b]], dim=1)
            after_q = torch.cat([out_after["pred_logits"][b], out_after["pred_boxes"][b]], dim=1)
            rows, cols = linear_sum_assignment(torch.cdist(before_q, after_q, p=1).numpy())
            torch.testing.assert_close(after_q[cols], before_q[rows], rtol=1e-4, atol=1e-4)


def test_discrete_sampling_option_trains_without_offset_gradients() -> None:
    from dataclasses import replace

    from models.rtdetrv2.detector import build_rtdetrv2

    cfg = replace(rtdetrv2.VARIANTS["rtdetrv2_tiny"].config, cross_attn_method="discrete")
    torch.manual_seed(0)
    model = build_rtdetrv2(cfg, num_classes=NUM_CLASSES).train()
    criterion = rtdetrv2.build_criterion(rtdetrv2.VARIANTS["rtdetrv2_tiny"], num_classes=NUM_CLASSES)
    targets = _targets()
    out = model(torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)), targets)
    criterion(out, targets, image_size=(SIZE, SIZE))["loss"].backward()
    offsets = [layer.cross_attn.sampling_offsets for layer in model.decoder.decoder.layers]
    assert all(not p.requires_grad and p.grad is None for o in offsets for p in o.parameters())
    weights = model.decoder.decoder.layers[0].cross_attn.attention_weights.weight
    assert weights.grad is not None and torch.isfinite(weights.grad).all()
