"""``models.check_input_size`` agrees with what the models can actually run."""

from __future__ import annotations

import pytest
import torch

import models


@pytest.mark.parametrize("name", ["damo_yolo_tiny", "rtdetrv2_tiny"])
def test_check_agrees_with_the_model(name: str) -> None:
    torch.manual_seed(0)
    model = models.build_model(name, num_classes=3).eval()
    for size in range(16, 112, 16):
        try:
            models.check_input_size(name, size)
            accepted = True
        except ValueError as exc:
            accepted = False
            assert name in str(exc) and str(size) in str(exc)
        try:
            with torch.no_grad():
                model(torch.rand(1, 3, size, size))
            runs = True
        except (ValueError, RuntimeError):
            runs = False
        assert accepted == runs, (name, size, accepted, runs)


def test_full_rows_minimum_sizes() -> None:
    # 300 queries need 21 * (size / 32) ** 2 >= 300 tokens: 128 px (336 tokens); 96 px has 189.
    assert models.min_input_size("rtdetrv2_s") == 128
    with pytest.raises(ValueError, match="189 encoder tokens for its 300 queries"):
        models.check_input_size("rtdetrv2_s", 96)
    models.check_input_size("rtdetrv2_x", 128)
    assert models.min_input_size("damo_yolo_l") == 32
    for bad in (0, -32, 100, 640.0, True):
        with pytest.raises(ValueError, match="positive multiple of 32"):
            models.check_input_size("damo_yolo_t", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown variant"):
        models.check_input_size("yolo_v99", 640)
