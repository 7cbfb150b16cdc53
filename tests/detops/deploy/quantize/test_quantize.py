"""INT8 on the CPU: ONNX Runtime static quantization of exported detops graphs, run through the ``ort``
and ``openvino`` runners and compared with the fp32 graph on the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detops.deploy.artifact import read_onnx_metadata
from detops.deploy.calibration import calibration_samples
from detops.deploy.quantize import quantize_onnx, read_quantization, tail_nodes
from detops.errors import DetopsError

# Family -> substrings every kept-fp32 weight layer's name must contain one of (the heads' last layers).
HEAD_NAMES = {"damo_yolo": ("gfl_cls", "gfl_reg"), "rtdetrv2": ("score_head", "bbox_head")}


def _inputs(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path)).graph
    init = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in init]


def _export(variant: str, out: Path, size: int) -> Path:
    from detops.deploy.exporting import export_artifact

    export_artifact(variant, out=out, image_size=size)
    return out


def _raw(path: Path, backend: str, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    from detops.deploy import load_runner

    runner = load_runner(path, backend=backend)
    return runner.infer(runner.prepare(images))


def _check_close(family: str, ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
    """int8 outputs close to fp32's: box coordinates within 5% of their spread, scores within 0.05
    (RT-DETRv2: the sorted per-image scores, since its top-k may swap near-equal queries, on
    average within 10% of their size)."""
    if family == "damo_yolo":
        spread = float(np.ptp(ref["boxes"]))
        assert np.abs(got["boxes"] - ref["boxes"]).max() <= 0.05 * spread
        assert np.abs(got["scores"] - ref["scores"]).max() <= 0.05
    else:
        a, b = np.sort(ref["scores"], axis=1), np.sort(got["scores"], axis=1)
        assert np.abs(a - b).max() <= 0.05
        assert np.abs(a - b).mean() <= 0.1 * float(np.abs(a).mean()) + 1e-4


@pytest.mark.parametrize(("variant", "size"), [("damo_yolo_tiny", 64), ("rtdetrv2_tiny", 64)])
def test_quantize_tiny_runs_on_ort_and_openvino_close_to_fp32(
    variant: str, size: int, synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    _quantize_and_compare(variant, size, synth_root, tmp_path)
    # ORT's symbolic shape inference dumps a model and uuid-named external data into the working
    # directory when it gives up; quantization must leave nothing there.
    assert sorted(p.name for p in cwd.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "size"), [("damo_yolo_t", 160), ("rtdetrv2_s", 160)])
def test_quantize_smallest_real_variants(variant: str, size: int, synth_root: Path, tmp_path: Path) -> None:
    _quantize_and_compare(variant, size, synth_root, tmp_path)


def _quantize_and_compare(variant: str, size: int, synth_root: Path, tmp_path: Path) -> None:
    from detops.data.dataset import CocoDetection

    src = _export(variant, tmp_path / "fp32.onnx", size)
    meta = read_onnx_metadata(src)
    samples = calibration_samples(synth_root, meta=meta, input_names=_inputs(src), n=4)
    report = quantize_onnx(src, calib_samples=samples, out=tmp_path / "int8.onnx", method="minmax")

    qmeta = read_onnx_metadata(report.path)
    assert qmeta.precision == "int8"
    assert {**qmeta.to_dict(), "precision": "fp32"} == meta.to_dict()  # everything else carried over
    quant = read_quantization(report.path)
    assert quant == {"method": "minmax", "calib_images": 4, "excluded_nodes": list(report.excluded_nodes)}
    assert report.quantized_nodes > 10
    assert report.excluded_weight_layers
    assert all(any(h in n for h in HEAD_NAMES[meta.family]) for n in report.excluded_weight_layers)

    images = [CocoDetection.from_root(synth_root, split="val", transform=None)[i]["image"] for i in range(3)]
    ref = _raw(src, "ort", images)
    for backend in ("ort", "openvino"):
        _check_close(meta.family, ref, _raw(report.path, backend, images))


def test_calibration_uses_the_artifacts_preprocessing(synth_root: Path, tmp_path: Path) -> None:
    from detops.deploy.artifact import ArtifactMeta
    from detops.deploy.preprocess import preprocess

    meta = ArtifactMeta("rtdetrv2_tiny", "rtdetrv2", ("a",), (1,), input_size=32, pixel_scale=1.0)
    samples = calibration_samples(
        synth_root, meta=meta, input_names=["images", "orig_target_sizes"], n=100, seed=3
    )
    assert len(samples) == 4  # the whole val split of the fixture
    from detops.data.dataset import CocoDetection

    ds = CocoDetection.from_root(synth_root, split="val", transform=None)
    want, sizes = preprocess([ds[0]["image"]], size=32, pixel_scale=1.0)
    np.testing.assert_array_equal(samples[0]["images"], want)
    assert samples[0]["images"].max() <= 1.0
    np.testing.assert_array_equal(samples[0]["orig_target_sizes"], sizes[:, ::-1])  # (width, height)


def test_tail_nodes_stop_at_the_last_weight_layers() -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="backbone/conv"),
        helper.make_node("Relu", ["a"], ["b"], name="backbone/relu"),
        helper.make_node("Conv", ["b", "w"], ["c"], name="head/conv"),
        helper.make_node("Sigmoid", ["c"], ["d"], name="head/sigmoid"),
        helper.make_node("Shape", ["b"], ["s"], name="shape"),
        helper.make_node("Reshape", ["d", "s"], ["y"], name="reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        initializer=[w],
    )
    assert set(tail_nodes(graph)) == {"reshape", "head/sigmoid", "head/conv", "shape"}


def test_quantize_refuses_bad_input(synth_root: Path, tmp_path: Path) -> None:
    src = _export("damo_yolo_tiny", tmp_path / "fp32.onnx", 64)
    meta = read_onnx_metadata(src)
    samples = calibration_samples(synth_root, meta=meta, input_names=["images"], n=1)
    out = tmp_path / "q.onnx"
    with pytest.raises(DetopsError, match="--method must be one of"):
        quantize_onnx(src, calib_samples=samples, out=out, method="kl")
    with pytest.raises(DetopsError, match="unknown node"):
        quantize_onnx(src, calib_samples=samples, out=out, exclude=["no/such/node"])
    with pytest.raises(DetopsError, match="no calibration images"):
        quantize_onnx(src, calib_samples=[], out=out)
    assert not out.exists()
    quantize_onnx(src, calib_samples=samples, out=out)
    with pytest.raises(DetopsError, match="field precision is 'int8'"):
        quantize_onnx(out, calib_samples=samples, out=tmp_path / "q2.onnx")
