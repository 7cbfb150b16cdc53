"""The ``tensorrt`` runner against the recording double: same detections as ONNX Runtime on the same
graph (the double executes the ONNX graph at the addresses the runner binds), per-layer profiling,
and the stamp check before deserialisation."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from detops.deploy.runners.tensorrt import TensorRTRunner
from detops.deploy.tensorrt.build import build_engine
from detops.deploy.tensorrt.stamp import DeviceInfo
from detops.errors import DetopsError

T4 = DeviceInfo("Tesla T4", (7, 5))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """damo_yolo_tiny (random init) exported at 64 px with its artifact metadata."""
    from detops.deploy.exporting import export_artifact

    out = tmp_path_factory.mktemp("trt_runner") / "tiny.onnx"
    export_artifact("damo_yolo_tiny", out=out, image_size=64)
    return out


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48 + 8 * i, 80, 3), dtype=np.uint8) for i in range(n)]


def test_runner_matches_onnx_runtime_and_profiles_layers(
    fake_trt: ModuleType, tiny_onnx: Path, tmp_path: Path
) -> None:
    from detops.deploy import load_runner

    engine = tmp_path / "tiny.engine"
    build_engine(tiny_onnx, out=engine, precision="fp16", max_batch=4, device=T4)
    runner = TensorRTRunner(engine, device="cuda", gpu=T4, memory_device="cpu", layer_profile=True)
    assert runner.meta.variant == "damo_yolo_tiny" and runner.meta.precision == "fp16"
    images = _images(3)
    ort_runner = load_runner(tiny_onnx, backend="ort")
    # Raw outputs first: random-init detections may all fall under the score threshold.
    raw = runner.infer(runner.prepare(images))
    raw_ort = ort_runner.infer(ort_runner.prepare(images))
    assert set(raw) == set(raw_ort) == {"scores", "boxes"}
    for name in raw:
        np.testing.assert_allclose(raw[name], raw_ort[name], rtol=1e-5, atol=1e-5)
    assert not np.allclose(raw["boxes"][0], raw["boxes"][1])  # the images differ, so must the outputs
    fake_trt.calls.clear()
    got = runner(images)
    want = ort_runner(images)
    assert len(got) == len(want) == 3
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g.boxes, w.boxes, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(g.category_ids, w.category_ids)
    shapes = [d for n, d in fake_trt.calls if n == "IExecutionContext.set_input_shape"]
    assert shapes == [{"name": "images", "shape": (3, 3, 64, 64), "ok": True}]
    assert sum(1 for n, _ in fake_trt.calls if n == "IExecutionContext.execute_async_v3") == 1
    times = runner.layer_times()
    assert times and all(len(v) == 2 for v in times.values())  # one per execution


def test_runner_refuses_batches_outside_the_profile(
    fake_trt: ModuleType, tiny_onnx: Path, tmp_path: Path
) -> None:
    engine = tmp_path / "tiny.engine"
    build_engine(tiny_onnx, out=engine, precision="fp32", max_batch=2, device=T4)
    runner = TensorRTRunner(engine, device="cuda", gpu=T4, memory_device="cpu")
    with pytest.raises(DetopsError, match=r"outside the engine's profile \(batch 1\.\.2\)"):
        runner(_images(3))


def test_runner_refuses_an_engine_for_another_gpu(
    fake_trt: ModuleType, tiny_onnx: Path, tmp_path: Path
) -> None:
    engine = tmp_path / "tiny.engine"
    build_engine(tiny_onnx, out=engine, precision="fp16", device=T4)
    with pytest.raises(
        DetopsError, match=r"compute capability 7\.5 on Tesla T4 \(this machine has 8\.9 on L4\)"
    ):
        TensorRTRunner(engine, device="cuda", gpu=DeviceInfo("L4", (8, 9)), memory_device="cpu")
    assert not [n for n, _ in fake_trt.calls if n == "Runtime.deserialize_cuda_engine"]


def test_load_runner_refuses_cpu_for_tensorrt(fake_trt: ModuleType, tiny_onnx: Path, tmp_path: Path) -> None:
    from detops.deploy import load_runner

    engine = tmp_path / "tiny.engine"
    build_engine(tiny_onnx, out=engine, precision="fp16", device=T4)
    with pytest.raises(DetopsError, match="--device cuda"):
        load_runner(engine, backend="tensorrt", device="cpu")
