"""Generic ONNX export: verified against PyTorch, dynamic batch, nothing written on failure."""

import numpy as np
import pytest
import torch

import models
from detops.errors import DetopsError
from detops.export import export_onnx, relative_error, run_onnx


@pytest.mark.parametrize("variant", ["damo_yolo_tiny", "rtdetrv2_tiny"])
def test_tiny_exports_verify_and_run_at_batch_three(variant, tmp_path):
    torch.manual_seed(0)
    model = models.build_model(variant, num_classes=5)
    dst = tmp_path / f"{variant}.onnx"
    report = export_onnx(variant, model, dst, image_size=128, check_batch=2)
    assert dst.is_file()
    wrapper = models.family_module(variant).export_wrapper(model.eval())
    gated = getattr(wrapper, "parity_outputs", wrapper.output_names)
    assert "scores" in gated
    assert all(report.max_rel_error[name] <= 1e-4 for name in gated)
    inputs = wrapper.example_inputs(3, 128)
    outputs = run_onnx(dst, {n: x.numpy() for n, x in zip(report.input_names, inputs, strict=True)})
    assert all(o.shape[0] == 3 for o in outputs)


def test_failed_verification_writes_nothing(tmp_path):
    model = models.build_model("damo_yolo_tiny", num_classes=3)
    dst = tmp_path / "never.onnx"
    with pytest.raises(DetopsError, match="ONNX Runtime differs"):
        export_onnx("damo_yolo_tiny", model, dst, image_size=64, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_relative_error_definition():
    ref = np.array([1.0, -4.0, 2.0])
    assert relative_error(ref, ref) == 0.0
    assert relative_error(ref + np.array([0.0, 0.4, 0.0]), ref) == pytest.approx(0.1)
