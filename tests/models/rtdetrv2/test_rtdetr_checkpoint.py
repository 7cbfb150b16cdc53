"""Official-checkpoint import against the release tensor layouts in tests/fixtures/checkpoints/."""

from __future__ import annotations

import pytest
import torch

from models import rtdetrv2
from tests.officials import official_state_dict


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("rtdetrv2_s", "ema"),
        ("rtdetrv2_s", "model"),
        ("rtdetrv2_s", "bare"),
        ("rtdetrv2_m", "ema"),
        # L and X allocate 43 M / 77 M random floats twice: several seconds each on 2 cores.
        pytest.param("rtdetrv2_l", "ema", marks=pytest.mark.slow),
        pytest.param("rtdetrv2_x", "ema", marks=pytest.mark.slow),
    ],
)
def test_convert_official_layout_strict_load(name: str, layout: str) -> None:
    state = official_state_dict(name)
    checkpoint = {
        "ema": {"ema": {"module": state, "updates": torch.tensor(5)}, "model": {}},
        "model": {"model": state, "optimizer": {"state": {}}},
        "bare": state,
    }[layout]
    variant = rtdetrv2.VARIANTS[name]
    converted = rtdetrv2.convert_official_checkpoint(variant, checkpoint, num_classes=80)
    assert list(converted) == list(state)  # every tensor used, none invented
    model = rtdetrv2.build_model(variant, num_classes=80)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key in (
        "decoder.anchors",
        "decoder.valid_mask",
        "decoder.decoder.layers.0.cross_attn.num_points_scale",
    ):
        assert torch.equal(model.state_dict()[key], state[key])


def test_ema_is_preferred_over_model() -> None:
    ema, raw = official_state_dict("rtdetrv2_s", seed=1), official_state_dict("rtdetrv2_s", seed=2)
    out = rtdetrv2.convert_official_checkpoint(
        rtdetrv2.VARIANTS["rtdetrv2_s"], {"ema": {"module": ema}, "model": raw}, num_classes=80
    )
    assert torch.equal(out["decoder.enc_score_head.weight"], ema["decoder.enc_score_head.weight"])


def test_round_trip_gives_same_outputs_as_reference_load() -> None:
    variant = rtdetrv2.VARIANTS["rtdetrv2_s"]
    state = official_state_dict("rtdetrv2_s")
    reference = rtdetrv2.build_model(variant, num_classes=80)
    reference.load_state_dict(state, strict=True)
    imported = rtdetrv2.build_model(variant, num_classes=80)
    imported.load_state_dict(
        rtdetrv2.convert_official_checkpoint(variant, {"ema": {"module": state}}, num_classes=80), strict=True
    )
    images = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = reference.eval()(images), imported.eval()(images)
    assert torch.isfinite(a["pred_logits"]).all()
    assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_boxes"], b["pred_boxes"])


def test_wrong_shape_names_the_key() -> None:
    state = official_state_dict("rtdetrv2_s")
    state["encoder.lateral_convs.1.conv.weight"] = torch.zeros(256, 128, 1, 1)
    with pytest.raises(ValueError, match=r"shape mismatch: encoder\.lateral_convs\.1\.conv\.weight"):
        rtdetrv2.convert_official_checkpoint(rtdetrv2.VARIANTS["rtdetrv2_s"], state, num_classes=80)


def test_missing_and_unexpected_keys_are_listed() -> None:
    state = official_state_dict("rtdetrv2_s")
    del state["decoder.dec_bbox_head.2.layers.1.bias"]
    state["decoder.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError) as err:
        rtdetrv2.convert_official_checkpoint(rtdetrv2.VARIANTS["rtdetrv2_s"], state, num_classes=80)
    assert "1 missing: decoder.dec_bbox_head.2.layers.1.bias" in str(err.value)
    assert "1 unexpected: decoder.extra.weight" in str(err.value)


def test_wrong_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="missing"):
        rtdetrv2.convert_official_checkpoint(
            rtdetrv2.VARIANTS["rtdetrv2_l"], official_state_dict("rtdetrv2_s"), num_classes=80
        )


def test_not_a_checkpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="no state dict"):
        rtdetrv2.convert_official_checkpoint(
            rtdetrv2.VARIANTS["rtdetrv2_s"], {"date": "x", "epoch": 3}, num_classes=80
        )


def test_fine_tuning_reinitialises_only_class_heads() -> None:
    variant = rtdetrv2.VARIANTS["rtdetrv2_s"]
    state = official_state_dict("rtdetrv2_s")
    torch.manual_seed(0)
    out = rtdetrv2.convert_official_checkpoint(variant, state, num_classes=3)
    model = rtdetrv2.build_model(variant, num_classes=3)
    model.load_state_dict(out, strict=True)
    heads = [k for k in out if tuple(out[k].shape) != tuple(state[k].shape)]
    assert sorted(heads) == sorted(
        [
            "decoder.denoising_class_embed.weight",
            "decoder.enc_score_head.weight",
            "decoder.enc_score_head.bias",
        ]
        + [f"decoder.dec_score_head.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    )
    assert out["decoder.enc_score_head.weight"].shape == (3, 256)
    assert out["decoder.denoising_class_embed.weight"].shape == (4, 256)
    # Fresh prior bias, and every other tensor copied unchanged.
    assert torch.allclose(out["decoder.enc_score_head.bias"], torch.full((3,), -4.59512), atol=1e-4)
    assert all(torch.equal(out[k], state[k]) for k in state if k not in heads)


def test_missing_derivable_buffers_are_filled() -> None:
    """Files without the cached anchors / num_points_scale / BN counters still import."""
    state = official_state_dict("rtdetrv2_s")
    dropped = [k for k in state if k.endswith(("num_points_scale", "num_batches_tracked"))]
    dropped += ["decoder.anchors", "decoder.valid_mask"]
    for k in dropped:
        del state[k]
    out = rtdetrv2.convert_official_checkpoint(rtdetrv2.VARIANTS["rtdetrv2_s"], state, num_classes=80)
    fresh = rtdetrv2.build_model(rtdetrv2.VARIANTS["rtdetrv2_s"], num_classes=80).state_dict()
    assert list(out) == list(fresh)
    assert torch.equal(out["decoder.valid_mask"], fresh["decoder.valid_mask"])
    assert int(out["decoder.valid_mask"].sum()) == 8084
