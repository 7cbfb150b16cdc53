"""ONNX export of the deployed model: graph I/O and ONNX Runtime parity (1e-4 relative)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import damo_yolo


def _export(name: str, path: Path, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = damo_yolo.build_model(damo_yolo.VARIANTS[name], num_classes=80)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():  # non-trivial BN so fusion matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    wrapper = damo_yolo.export_wrapper(model)
    assert model.deployed and not model.training
    torch.onnx.export(
        wrapper,
        wrapper.example_inputs(1, size),
        str(path),
        input_names=wrapper.input_names,
        output_names=wrapper.output_names,
        dynamic_axes=wrapper.dynamic_axes,
        opset_version=17,
        dynamo=False,
    )
    return wrapper


@pytest.mark.parametrize("name", ["damo_yolo_tiny", "damo_yolo_t"])
def test_onnx_runtime_matches_pytorch(name: str, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    size = 160
    path = tmp_path / f"{name}.onnx"
    wrapper = _export(name, path, size)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == [
        "scores",
        "boxes",
    ]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (images,) = wrapper.example_inputs(2, size)  # batch 2 through a graph traced at batch 1
    scores, boxes = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        ref_scores, ref_boxes = wrapper(images)
    anchors = (size // 8) ** 2 + (size // 16) ** 2 + (size // 32) ** 2
    assert scores.shape == (2, anchors, 80) and boxes.shape == (2, anchors, 4)
    for got, ref in ((scores, ref_scores.numpy()), (boxes, ref_boxes.numpy())):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
