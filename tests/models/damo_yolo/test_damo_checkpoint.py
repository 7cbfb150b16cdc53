"""Official-layout checkpoint import: strict round trip, legacy 81-class heads, fine-tuning, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import damo_yolo

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "checkpoints"
# M and L allocate 30-45 M parameters three times over; their key layout is also checked in test_damo_model.
PUBLISHED = [
    "damo_yolo_t",
    "damo_yolo_s",
    pytest.param("damo_yolo_m", marks=pytest.mark.slow),
    pytest.param("damo_yolo_l", marks=pytest.mark.slow),
]


def _official_state(
    name: str, *, seed: int = 0, legacy: bool = False, random: bool = True
) -> dict[str, torch.Tensor]:
    """Tensors with exactly the official names, shapes and dtypes (BN variances positive): random, or
    (``random=False``, cheaper for the large variants) a distinct constant per tensor."""
    tensors = json.loads((FIXTURES / f"{name}.json").read_text())["tensors"]
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i, (key, spec) in enumerate(tensors.items()):
        shape = list(spec["shape"])
        if legacy and key.startswith("head.gfl_cls."):
            shape[0] = 81
        if spec["dtype"] == "int64":
            state[key] = torch.randint(0, 1000, shape, generator=gen)
        elif not random:
            state[key] = torch.full(shape, 0.5 + (i % 101) / 101)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key == "head.integral.project":
            state[key] = torch.linspace(0, 16, 17)
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    return state


def _images() -> torch.Tensor:
    return torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3)) * 255.0


@pytest.mark.parametrize("name", PUBLISHED)
def test_official_layout_loads_strictly(name: str) -> None:
    variant = damo_yolo.VARIANTS[name]
    state = _official_state(name, random=False)
    converted = damo_yolo.convert_official_checkpoint(variant, {"model": state, "epoch": 300}, num_classes=80)
    model = damo_yolo.build_model(variant, num_classes=80)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(converted) == len(state)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_import_reproduces_outputs_of_the_same_tensors() -> None:
    variant = damo_yolo.VARIANTS["damo_yolo_t"]
    state = _official_state("damo_yolo_t", seed=1)
    prefixed = {f"module.{k}": v for k, v in state.items()}  # DDP-saved file
    imported = damo_yolo.build_model(variant, num_classes=80)
    imported.load_state_dict(
        damo_yolo.convert_official_checkpoint(variant, prefixed, num_classes=80), strict=True
    )
    direct = damo_yolo.build_model(variant, num_classes=80)
    direct.load_state_dict(state, strict=True)
    with torch.no_grad():
        a, b = imported.eval()(_images()), direct.eval()(_images())
        fused = imported.deploy()(_images())
    assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["boxes"], b["boxes"])
    torch.testing.assert_close(fused["scores"], a["scores"], rtol=1e-4, atol=1e-5)
    # Random weights must give a non-degenerate output for the comparison to mean something.
    assert float(a["scores"].std()) > 1e-3


def test_legacy_81_class_head_drops_the_background_row() -> None:
    variant = damo_yolo.VARIANTS["damo_yolo_t"]
    state = _official_state("damo_yolo_t", seed=2, legacy=True)
    assert state["head.gfl_cls.0.weight"].shape[0] == 81
    result = damo_yolo.convert_checkpoint(variant, {"model": state}, num_classes=80)
    assert result.legacy_background_dropped and result.reinitialised == ()
    for i in range(3):
        for leaf in ("weight", "bias"):
            key = f"head.gfl_cls.{i}.{leaf}"
            assert torch.equal(result.state_dict[key], state[key][:80])
    damo_yolo.build_model(variant, num_classes=80).load_state_dict(result.state_dict, strict=True)


def test_other_class_count_reinitialises_only_class_convs() -> None:
    variant = damo_yolo.VARIANTS["damo_yolo_t"]
    state = _official_state("damo_yolo_t", seed=3, legacy=True)
    with pytest.warns(UserWarning, match="re-initialised head.gfl_cls.0.bias"):
        converted = damo_yolo.convert_official_checkpoint(variant, {"model": state}, num_classes=3)
    assert converted["head.gfl_cls.2.weight"].shape == (3, 256, 3, 3)
    torch.testing.assert_close(
        converted["head.gfl_cls.1.bias"], torch.full((3,), -4.59512), atol=1e-4, rtol=0
    )
    assert torch.equal(converted["head.gfl_reg.0.weight"], state["head.gfl_reg.0.weight"])
    damo_yolo.build_model(variant, num_classes=3).load_state_dict(converted, strict=True)


def test_mismatches_are_named() -> None:
    variant = damo_yolo.VARIANTS["damo_yolo_t"]
    state = _official_state("damo_yolo_t")
    bad = dict(state)
    bad["neck.merge_5.conv3.conv.weight"] = torch.zeros(64, 127, 1, 1)
    with pytest.raises(ValueError, match=r"shape mismatch: neck\.merge_5\.conv3\.conv\.weight"):
        damo_yolo.convert_official_checkpoint(variant, {"model": bad}, num_classes=80)
    bad = dict(state)
    del bad["backbone.block_list.0.conv.bn.running_var"]
    bad["head.extra.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError,
        match=r"1 missing: backbone\.block_list\.0\.conv\.bn\.running_var.*1 unexpected: head\.extra",
    ):
        damo_yolo.convert_official_checkpoint(variant, bad, num_classes=80)
    # An S file is not a T file.
    with pytest.raises(ValueError, match="shape mismatch"):
        damo_yolo.convert_official_checkpoint(variant, _official_state("damo_yolo_s"), num_classes=80)
