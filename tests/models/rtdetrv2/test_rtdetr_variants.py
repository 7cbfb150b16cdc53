"""RT-DETRv2 variant table: exact parameter counts, official key layout, GFLOPs at 640."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import models
from models import rtdetrv2
from models.rtdetrv2.frozen_bn import FrozenBatchNorm2d

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "checkpoints"
PUBLISHED_ROWS = ["rtdetrv2_s", "rtdetrv2_m", "rtdetrv2_l", "rtdetrv2_x"]


def test_table_rows_and_published_figures() -> None:
    assert set(PUBLISHED_ROWS + ["rtdetrv2_tiny"]) <= set(rtdetrv2.VARIANTS)
    expected = {
        "rtdetrv2_s": (48.1, 20, 60, 20_184_464, 4.61, 5.03),
        "rtdetrv2_m": (51.9, 36, 100, 36_593_772, 6.90, 7.51),
        "rtdetrv2_l": (53.4, 42, 136, 42_891_372, 9.26, 9.76),
        "rtdetrv2_x": (54.3, 76, 259, 76_556_268, 13.51, 15.03),
    }
    for name, figures in expected.items():
        v = rtdetrv2.VARIANTS[name]
        p = v.published
        assert (p.map_50_95, p.params_m, p.gflops, p.params_exact, p.t4_ms_upstream, p.t4_ms_table) == figures
        assert (v.family, v.input_size, v.pixel_scale) == ("rtdetrv2", 640, 1.0)
        assert models.get_variant(name) is v
    assert rtdetrv2.VARIANTS["rtdetrv2_tiny"].published is None


@pytest.mark.parametrize("name", [n for n, v in rtdetrv2.VARIANTS.items() if v.published is not None])
def test_param_count_exact(name: str) -> None:
    variant = rtdetrv2.VARIANTS[name]
    model = rtdetrv2.build_model(variant, num_classes=80)
    assert rtdetrv2.count_params(model) == variant.published.params_exact
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if variant.config.freeze_stem:
        # The frozen stem convs (3->32->32->64, 3x3) count but do not train.
        assert rtdetrv2.count_params(model) - trainable == 32 * 3 * 9 + 32 * 32 * 9 + 64 * 32 * 9
        assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.modules())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    else:
        assert trainable == rtdetrv2.count_params(model)


@pytest.mark.parametrize("name", PUBLISHED_ROWS)
def test_state_dict_matches_official_layout(name: str) -> None:
    spec = json.loads((FIXTURES / f"{name}.json").read_text())["tensors"]
    state = rtdetrv2.build_model(rtdetrv2.VARIANTS[name], num_classes=80).state_dict()
    assert list(state) == list(spec)  # same names, same order
    for key, meta in spec.items():
        assert list(state[key].shape) == meta["shape"], key
        assert str(state[key].dtype).removeprefix("torch.") == meta["dtype"], key


def test_cached_anchor_buffers() -> None:
    model = rtdetrv2.build_model(rtdetrv2.VARIANTS["rtdetrv2_s"], num_classes=80)
    anchors, valid = model.decoder.anchors, model.decoder.valid_mask
    assert anchors.shape == (1, 8400, 4) and valid.shape == (1, 8400, 1) and valid.dtype == torch.bool
    assert int(valid.sum()) == 8084
    assert torch.isinf(anchors[~valid.expand_as(anchors)]).all()
    # First token of level 0: centre (0.5/80, 0.5/80), size 0.05 -> invalid (centre below 0.01).
    first_valid = anchors[0, valid[0, :, 0]][0].sigmoid()
    assert torch.all((first_valid > 0.01) & (first_valid < 0.99))


@pytest.mark.parametrize(
    "name",
    [
        "rtdetrv2_s",
        pytest.param("rtdetrv2_m", marks=pytest.mark.slow),
        pytest.param("rtdetrv2_l", marks=pytest.mark.slow),
        pytest.param("rtdetrv2_x", marks=pytest.mark.slow),
    ],
)
def test_gflops_within_two_percent(name: str) -> None:
    variant = rtdetrv2.VARIANTS[name]
    model = rtdetrv2.build_model(variant, num_classes=80)
    gflops = rtdetrv2.count_gflops(model, image_size=640)
    assert abs(gflops - variant.published.gflops) / variant.published.gflops < 0.02, gflops
    assert model.training  # the mode is restored


def test_m_counts_only_eval_layers() -> None:
    """M trains 6 decoder layers but runs 3 at inference; eval FLOPs must exclude layers 4-6."""
    cfg = rtdetrv2.VARIANTS["rtdetrv2_tiny"].config
    from dataclasses import replace

    from models.rtdetrv2.detector import build_rtdetrv2

    full = build_rtdetrv2(replace(cfg, decoder_layers=4), num_classes=80)
    early = build_rtdetrv2(replace(cfg, decoder_layers=4, eval_idx=1), num_classes=80)
    assert rtdetrv2.count_params(full) == rtdetrv2.count_params(early)
    assert rtdetrv2.count_gflops(early, image_size=128) < rtdetrv2.count_gflops(full, image_size=128)
