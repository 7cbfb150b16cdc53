"""End-to-end files in the TensorRT builder (recording double): DAMO-YOLO's ONNX NMS tail becomes the
EfficientNMS_TRT plugin with the file's thresholds and K, and the engine's detections equal ONNX
Runtime's on the end-to-end graph (the double runs the plugin as the library's class-wise NMS)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from detops.deploy.runners.tensorrt import TensorRTRunner
from detops.deploy.tensorrt.build import build_engine
from detops.deploy.tensorrt.stamp import DeviceInfo, read_stamp

T4 = DeviceInfo("Tesla T4", (7, 5))


@pytest.fixture(scope="module")
def e2e_files(tiny_artifacts, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """End-to-end exports of the tiny checkpoints (scores above threshold, see ``make_checkpoint``)."""
    from detops.deploy.exporting import export_artifact

    root = tmp_path_factory.mktemp("trt_e2e")
    out = {}
    for variant in ("damo_yolo_tiny", "rtdetrv2_tiny"):
        out[variant] = root / f"{variant}_e2e.onnx"
        export_artifact(tiny_artifacts[variant]["checkpoint"], out=out[variant], end2end=True)
    return out


def _calls(trt: ModuleType, name: str) -> list[dict]:
    return [d for n, d in trt.calls if n == name]


def test_damo_end2end_build_replaces_nms_by_efficient_nms_plugin(
    fake_trt: ModuleType, e2e_files: dict[str, Path], tmp_path: Path
) -> None:
    engine = tmp_path / "e2e.engine"
    build_engine(e2e_files["damo_yolo_tiny"], out=engine, precision="fp16", max_batch=4, device=T4)
    assert _calls(fake_trt, "init_libnvinfer_plugins") == [{"namespace": ""}]
    assert _calls(fake_trt, "IPluginRegistry.get_plugin_creator") == [
        {"type": "EfficientNMS_TRT", "version": "1"}
    ]
    (plugin,) = _calls(fake_trt, "IPluginCreator.create_plugin")
    assert plugin["type"] == "EfficientNMS_TRT"
    assert plugin["fields"] == {
        "score_threshold": pytest.approx(0.05),
        "iou_threshold": pytest.approx(0.7),
        "max_output_boxes": 500,
        "background_class": -1,
        "score_activation": 0,
        "class_agnostic": 0,
        "box_coding": 0,
    }
    assert _calls(fake_trt, "INetworkDefinition.add_plugin_v2") == [
        {"inputs": ["raw_boxes", "raw_scores"], "type": "EfficientNMS_TRT"}
    ]
    assert [d["name"] for d in _calls(fake_trt, "INetworkDefinition.unmark_output")] == [
        "raw_boxes",
        "raw_scores",
    ]
    assert [d["name"] for d in _calls(fake_trt, "INetworkDefinition.mark_output")] == [
        "num_dets",
        "boxes",
        "scores",
        "labels",
    ]
    # The parser saw the graph cut before its NMS, not the ONNX NonMaxSuppression tail.
    import onnx

    (parse,) = _calls(fake_trt, "OnnxParser.parse")
    full = onnx.load(str(e2e_files["damo_yolo_tiny"]))
    assert parse["nodes"] < len(full.graph.node)
    stamp = read_stamp(engine)
    assert stamp.artifact["end2end"] and stamp.artifact["max_detections"] == 500


def test_damo_end2end_engine_detections_equal_onnx_runtime(
    fake_trt: ModuleType, e2e_files: dict[str, Path], tmp_path: Path
) -> None:
    from detops.deploy import load_runner

    engine = tmp_path / "e2e.engine"
    build_engine(e2e_files["damo_yolo_tiny"], out=engine, precision="fp32", max_batch=4, device=T4)
    runner = TensorRTRunner(engine, device="cuda", gpu=T4, memory_device="cpu")
    assert runner.output_names == ["num_dets", "boxes", "scores", "labels"]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48 + 8 * i, 80, 3), dtype=np.uint8) for i in range(3)]
    raw = runner.infer(runner.prepare(images))
    assert raw["num_dets"].shape == (3, 1) and raw["num_dets"].dtype == np.int32  # EfficientNMS' layout
    got = runner(images)
    want = load_runner(e2e_files["damo_yolo_tiny"], backend="ort")(images)
    assert sum(len(d) for d in want) > 0
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.labels, w.labels)
        np.testing.assert_allclose(g.boxes, w.boxes, rtol=0, atol=1e-3)
        np.testing.assert_allclose(g.scores, w.scores, rtol=0, atol=1e-5)


def test_rtdetr_end2end_build_has_no_nms_to_replace(
    fake_trt: ModuleType, e2e_files: dict[str, Path], tmp_path: Path
) -> None:
    build_engine(e2e_files["rtdetrv2_tiny"], out=tmp_path / "rt.engine", precision="fp16", device=T4)
    assert not _calls(fake_trt, "IPluginCreator.create_plugin")
    assert not _calls(fake_trt, "INetworkDefinition.add_plugin_v2")
