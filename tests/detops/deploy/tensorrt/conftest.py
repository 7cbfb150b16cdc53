"""Fixtures for the TensorRT tests: the recording double injected as ``tensorrt``, and a small ONNX file."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

_spec = importlib.util.spec_from_file_location("fake_tensorrt", Path(__file__).with_name("fake_tensorrt.py"))
assert _spec is not None and _spec.loader is not None
fake_tensorrt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_tensorrt)


@pytest.fixture
def make_fake_trt(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleType]:
    """``make_fake_trt(version=..., unsupported_ops=(...))`` installs a fresh double as ``tensorrt``."""

    def make(**kwargs: object) -> ModuleType:
        module = fake_tensorrt.build_fake(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    return make


@pytest.fixture
def fake_trt(make_fake_trt: Callable[..., ModuleType]) -> ModuleType:
    """The double (TensorRT 10.3) installed as ``tensorrt`` for this test."""
    return make_fake_trt()


@pytest.fixture
def conv_onnx(tmp_path: Path) -> Path:
    """A two-node ONNX graph (Conv -> Relu) with input ``images`` [N,3,16,16] and a dynamic batch."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w"], ["c"], name="head/conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["scores"], name="head/relu"),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4, 16, 16])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    return path
