"""``quantize_onnx``, ``read_quantization`` and ``tail_nodes`` on small hand-built graphs.

The model is two 1x1 convolutions (stem: Conv, Relu; head: Conv, Sigmoid) with detops metadata, so a
quantisation takes well under a second and every figure can be worked out by hand: MinMax ranges
of the calibration images, symmetric per-channel int8 weights, asymmetric uint8 activations.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detops.deploy.artifact import ArtifactMeta, read_onnx_metadata, write_onnx_metadata
from detops.deploy.quantize import quantize_onnx, read_quantization, tail_nodes
from detops.errors import DetopsError

RNG = np.random.default_rng(0)
W_STEM = RNG.normal(size=(3, 2, 1, 1)).astype(np.float32)
W_HEAD = (RNG.normal(size=(4, 3, 1, 1)) + 0.3).astype(np.float32)
HW = 8


def _meta(batch: int | None = None) -> ArtifactMeta:
    return ArtifactMeta(
        "damo_yolo_tiny", "damo_yolo", ("a", "b"), (1, 3), input_size=HW, pixel_scale=255.0, batch=batch
    )


def _model(path: Path, *, batch: int | None = None, precision: str = "fp32") -> Path:
    """images -> stem/conv -> stem/relu -> head/conv -> head/sigmoid -> scores, with detops metadata,
    an unrelated ``author`` entry and a stale ``detops_quant.stale`` entry."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Conv", ["images", "w_stem"], ["a"], name="stem/conv"),
        helper.make_node("Relu", ["a"], ["b"], name="stem/relu"),
        helper.make_node("Conv", ["b", "w_head"], ["c"], name="head/conv"),
        helper.make_node("Sigmoid", ["c"], ["scores"], name="head/sigmoid"),
    ]
    n: int | str = batch if batch is not None else "N"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 2, HW, HW])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, 4, HW, HW])],
        initializer=[numpy_helper.from_array(W_STEM, "w_stem"), numpy_helper.from_array(W_HEAD, "w_head")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"author": "me", "detops_quant.stale": "1"})
    onnx.save(model, str(path))
    write_onnx_metadata(path, replace(_meta(batch), precision=precision))
    return path


def _samples(n: int = 3, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"images": rng.normal(size=(1, 2, HW, HW)).astype(np.float32)} for _ in range(n)]


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _nodes(path: Path) -> list[Any]:
    import onnx

    return list(onnx.load(str(path)).graph.node)


def _props(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


# --- quantize_onnx ------------------------------------------------------------------------------


def test_default_keeps_the_tail_fp32_and_records_it(tmp_path: Path) -> None:
    src = _model(tmp_path / "m.onnx")
    out = tmp_path / "q.onnx"
    report = quantize_onnx(src, calib_samples=_samples(3), out=out)
    assert report.path == out and out.is_file()
    assert report.method == "minmax"  # the default
    assert report.calib_images == 3
    assert report.excluded_nodes == ("head/sigmoid", "head/conv")
    assert report.excluded_weight_layers == ("head/conv",)
    # activations quantised: the images and the stem's output (the head's input); weights are stored
    # quantised with a DequantizeLinear only
    assert report.quantized_nodes == 2
    nodes = {n.name: n for n in _nodes(out)}
    assert list(nodes["head/conv"].input)[1] == "w_head"  # fp32 weight, no DequantizeLinear
    assert list(nodes["stem/conv"].input)[1] == "w_stem_DequantizeLinear_Output"
    assert sorted(n.name for n in nodes.values() if n.op_type == "QuantizeLinear") == [
        "b_QuantizeLinear",
        "images_QuantizeLinear",
    ]

    props = _props(out)
    assert props["author"] == "me"  # other entries kept
    assert "detops_quant.stale" not in props  # an old quantisation record is not carried over
    assert props["detops_quant.method"] == '"minmax"'
    assert props["detops_quant.calib_images"] == "3"
    assert props["detops_quant.excluded_nodes"] == '["head/sigmoid", "head/conv"]'
    assert read_onnx_metadata(out) == replace(_meta(), precision="int8")
    assert read_quantization(out) == {
        "method": "minmax",
        "calib_images": 3,
        "excluded_nodes": ["head/sigmoid", "head/conv"],
    }


def test_empty_exclude_quantizes_everything(tmp_path: Path) -> None:
    report = quantize_onnx(
        _model(tmp_path / "m.onnx"), calib_samples=_samples(2), out=tmp_path / "q.onnx", exclude=[]
    )
    assert report.excluded_nodes == () and report.excluded_weight_layers == ()
    assert report.quantized_nodes == 4  # images, b, c and scores
    assert report.calib_images == 2
    nodes = {n.name: n for n in _nodes(report.path)}
    assert list(nodes["head/conv"].input)[1] == "w_head_DequantizeLinear_Output"
    assert read_quantization(report.path)["excluded_nodes"] == []


def test_explicit_exclude_reaches_the_file_and_the_report(tmp_path: Path) -> None:
    report = quantize_onnx(
        _model(tmp_path / "m.onnx"),
        calib_samples=_samples(2),
        out=tmp_path / "q.onnx",
        exclude=["head/conv", "stem/relu", "stem/conv"],
    )
    assert report.excluded_nodes == ("head/conv", "stem/relu", "stem/conv")
    # the weight layers among them, in graph order; the Relu is no weight layer
    assert report.excluded_weight_layers == ("stem/conv", "head/conv")
    nodes = {n.name: n for n in _nodes(report.path)}
    assert list(nodes["stem/conv"].input)[1] == "w_stem" and list(nodes["head/conv"].input)[1] == "w_head"
    assert read_quantization(report.path)["excluded_nodes"] == ["head/conv", "stem/relu", "stem/conv"]


def test_minmax_figures_per_channel_symmetric_weights_asymmetric_uint8_activations(tmp_path: Path) -> None:
    samples = _samples(3)
    report = quantize_onnx(_model(tmp_path / "m.onnx"), calib_samples=samples, out=tmp_path / "q.onnx")
    init = _initializers(report.path)
    x = np.concatenate([s["images"] for s in samples])
    rmin, rmax = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = (rmax - rmin) / 255.0
    assert init["images_scale"] == pytest.approx(scale, rel=1e-5)
    assert init["images_zero_point"].dtype == np.uint8
    assert int(init["images_zero_point"]) == round(-rmin / scale)
    assert 0 < int(init["images_zero_point"]) < 255 and int(init["images_zero_point"]) != 128
    # per channel: one scale per output channel, max |w| / 127, zero points 0 (int8)
    want = np.abs(W_STEM).reshape(3, -1).max(axis=1) / 127.0
    assert init["w_stem_scale"].shape == (3,)
    np.testing.assert_allclose(init["w_stem_scale"], want, rtol=1e-5)
    assert init["w_stem_zero_point"].dtype == np.int8
    np.testing.assert_array_equal(init["w_stem_zero_point"], np.zeros(3, np.int8))
    assert init["w_stem_quantized"].dtype == np.int8
    assert "w_head_scale" not in init  # kept fp32


@pytest.mark.parametrize(
    ("method", "printed"), [("minmax", None), ("entropy", "entropy"), ("percentile", "percentile")]
)
def test_each_method_reaches_onnx_runtime_and_the_file(
    method: str, printed: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = _samples(3)
    samples[0]["images"][0, 0, 0, 0] = 40.0  # an outlier: a percentile range is narrower than MinMax's
    report = quantize_onnx(
        _model(tmp_path / "m.onnx"), calib_samples=samples, out=tmp_path / "q.onnx", method=method
    )
    assert report.method == method
    assert read_quantization(report.path)["method"] == method
    # ONNX Runtime names the histogram algorithm it runs (at its default bins, entropy's range equals
    # MinMax's on this data, so its printout is the only witness that it ran)
    out = capsys.readouterr().out
    for name in ("entropy", "percentile"):
        assert (f"using '{name}' algorithm" in out) == (name == printed)
    x = np.concatenate([s["images"] for s in samples])
    minmax_scale = (float(x.max()) - min(0.0, float(x.min()))) / 255.0
    scale = float(_initializers(report.path)["images_scale"])
    if method == "percentile":
        assert scale < minmax_scale * (1 - 1e-5)
    else:
        assert scale == pytest.approx(minmax_scale, rel=1e-5)


@pytest.mark.parametrize("n", [4, 3])
def test_a_fixed_batch_graph_gets_stacked_calibration_batches(n: int, tmp_path: Path) -> None:
    src = _model(tmp_path / "m.onnx", batch=2)
    report = quantize_onnx(src, calib_samples=_samples(n), out=tmp_path / "q.onnx")
    assert report.calib_images == n  # images, not batches
    assert read_quantization(report.path)["calib_images"] == n
    assert read_onnx_metadata(report.path).batch == 2


def test_default_output_is_beside_the_source(tmp_path: Path) -> None:
    src = _model(tmp_path / "det.onnx")
    report = quantize_onnx(src, calib_samples=_samples(1))
    assert report.path == tmp_path / "det.int8.onnx" and report.path.is_file()


def test_preprocessing_runs_in_a_private_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime.quantization.shape_inference as shape_inference

    real = shape_inference.quant_pre_process
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(shape_inference, "quant_pre_process", spy)
    src = _model(tmp_path / "m.onnx")
    quantize_onnx(src, calib_samples=_samples(1), out=tmp_path / "q.onnx")
    ((args, kwargs),) = calls
    assert args[0] == str(src)
    prepared = Path(args[1])
    assert prepared.name == "prepared.onnx" and prepared.parent.name.startswith("detops-quant-")
    assert not prepared.parent.exists()  # cleaned up
    # ORT's symbolic shape pass is skipped (it dumps files into the working directory on some graphs)
    assert kwargs == {"skip_symbolic_shape": True}


def _refused(src: Path, out: Path, **kwargs: Any) -> DetopsError:
    with pytest.raises(DetopsError) as exc:
        quantize_onnx(src, out=out, **kwargs)
    assert not out.exists()
    return exc.value


def test_bad_input_messages(tmp_path: Path) -> None:
    src = _model(tmp_path / "m.onnx")
    out = tmp_path / "q.onnx"
    err = _refused(src, out, calib_samples=_samples(1), method="kl")
    assert str(err) == "--method must be one of minmax, entropy, percentile, got 'kl'" and err.exit_code == 2
    err = _refused(src, out, calib_samples=[])
    assert str(err) == f"{src}: no calibration images"
    err = _refused(src, out, calib_samples=_samples(1), exclude=["head/conv", "nope"])
    assert str(err) == f"{src}: --exclude names unknown node(s) ['nope']"
    err = _refused(src, out, calib_samples=_samples(1), exclude=[f"n{i}" for i in range(7)])
    assert str(err) == f"{src}: --exclude names unknown node(s) ['n0', 'n1', 'n2', 'n3', 'n4']"
    int8 = _model(tmp_path / "int8.onnx", precision="int8")
    err = _refused(int8, out, calib_samples=_samples(1))
    assert str(err) == f"{int8}: field precision is 'int8'; quantize an fp32 graph"


def test_an_onnx_runtime_failure_is_one_line_exit_1(tmp_path: Path) -> None:
    src = _model(tmp_path / "m.onnx")
    out = tmp_path / "q.onnx"
    wrong = [{"pixels": s["images"]} for s in _samples(1)]  # not the graph's input name
    err = _refused(src, out, calib_samples=wrong)
    assert str(err).startswith(f"{src}: ONNX Runtime quantization failed (") and str(err).endswith(")")
    assert "\n" not in str(err) and err.exit_code == 1


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RuntimeError("  first line\nsecond line\n"), "first line"),
        (RuntimeError(""), "RuntimeError"),
        (ValueError(" \n "), "ValueError"),
    ],
)
def test_an_onnx_runtime_failure_shows_its_first_line_or_type(
    error: Exception, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime.quantization

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", fail)
    src = _model(tmp_path / "m.onnx")
    err = _refused(src, tmp_path / "q.onnx", calib_samples=_samples(1))
    assert str(err) == f"{src}: ONNX Runtime quantization failed ({shown})" and err.exit_code == 1


def test_the_calibration_reader_hands_out_every_sample_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime.quantization

    seen: list[list[np.ndarray]] = []

    def drain(model_input: str, model_output: str, reader: Any, **kwargs: Any) -> None:
        for _ in range(2):  # a second pass after rewind sees the same feeds again
            batch = []
            while (feed := reader.get_next()) is not None:
                batch.append(feed["images"])
            seen.append(batch)
            reader.rewind()
        raise RuntimeError("stop here")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", drain)
    samples = _samples(3)
    _refused(_model(tmp_path / "m.onnx"), tmp_path / "q.onnx", calib_samples=samples)
    assert [len(b) for b in seen] == [3, 3]
    for batch in seen:
        for got, want in zip(batch, samples, strict=True):
            np.testing.assert_array_equal(got, want["images"])


# --- read_quantization --------------------------------------------------------------------------


def test_read_quantization_only_the_prefixed_entries_json_decoded(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    src = _model(tmp_path / "m.onnx")
    model = onnx.load(str(src))
    helper.set_model_props(model, {"detops_quant.a": '{"x": [1, 2]}', "detops_quant.b": "null", "other": "1"})
    onnx.save(model, str(tmp_path / "p.onnx"))
    assert read_quantization(tmp_path / "p.onnx") == {"a": {"x": [1, 2]}, "b": None}

    plain = onnx.load(str(src))
    helper.set_model_props(plain, {"detops.variant": '"v"'})
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    assert read_quantization(str(tmp_path / "plain.onnx")) == {}


def test_read_quantization_does_not_load_the_weights(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    model = onnx.load(str(_model(tmp_path / "m.onnx")))
    helper.set_model_props(model, {"detops_quant.method": '"minmax"'})
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.bin", size_threshold=0)
    (tmp_path / "ext.bin").unlink()  # only the graph file is at hand (e.g. a metadata-only download)
    assert read_quantization(path) == {"method": "minmax"}


# --- tail_nodes ---------------------------------------------------------------------------------


def _graph(nodes: list[Any], outputs: list[str], initializers: list[str]) -> Any:
    """A GraphProto for ``tail_nodes`` (shapes and types are irrelevant to the walk)."""
    from onnx import TensorProto, helper, numpy_helper

    return helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.ones((1,), np.float32), name) for name in initializers],
    )


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose", "MatMul", "Gemm"])
def test_tail_stops_at_each_kind_of_weight_layer(op: str) -> None:
    from onnx import helper

    graph = _graph(
        [
            helper.make_node("Relu", ["x"], ["f"], name="backbone"),
            helper.make_node(op, ["f", "w"], ["h"], name="head"),
            helper.make_node("Sigmoid", ["h"], ["y"], name="act"),
        ],
        ["y"],
        ["w"],
    )
    assert tail_nodes(graph) == ["act", "head"]


def test_tail_walks_through_layers_without_a_constant_weight() -> None:
    from onnx import helper

    graph = _graph(
        [
            helper.make_node("Conv", ["x", "w"], ["a"], name="stem"),
            helper.make_node("MatMul", ["a", "a"], ["b"], name="attn"),  # two activations: no weight layer
            helper.make_node("Add", ["b", "bias"], ["y"], name="bias"),  # a constant, but no weight layer
        ],
        ["y"],
        ["w", "bias"],
    )
    assert tail_nodes(graph) == ["bias", "attn", "stem"]


def test_tail_does_not_walk_through_shape_or_size() -> None:
    from onnx import helper

    graph = _graph(
        [
            helper.make_node("Conv", ["x", "w"], ["a"], name="stem"),
            helper.make_node("Relu", ["a"], ["f"], name="feat"),
            helper.make_node("Conv", ["f", "w"], ["h"], name="head"),
            helper.make_node("Shape", ["f"], ["s"], name="shape"),
            helper.make_node("Size", ["f"], ["n"], name="size"),
            helper.make_node("Reshape", ["h", "s"], ["y1"], name="reshape"),
            helper.make_node("Mul", ["h", "n"], ["y2"], name="scale"),
        ],
        ["y1", "y2"],
        ["w"],
    )
    # depth first from the last output: y2 (scale, size, head), then y1 (reshape, shape)
    assert tail_nodes(graph) == ["scale", "size", "head", "reshape", "shape"]


def test_tail_names_unnamed_nodes_and_lists_each_node_once() -> None:
    from onnx import helper

    graph = _graph(
        [
            helper.make_node("Conv", ["x", "w"], ["p"], name="stem"),
            helper.make_node("Split", ["p"], ["q1", "q2"], name="split"),
            helper.make_node("Relu", ["q1"], ["y1"]),  # unnamed
            helper.make_node("Add", ["q2", "x"], ["y2"], name="add"),  # reads the graph input x
        ],
        ["y1", "y2"],
        ["w"],
    )
    # y2 first: add (x is a graph input, skipped), split, stem; then y1: Relu, and split again (listed once)
    assert tail_nodes(graph) == ["add", "split", "stem", "Relu:y1"]


def test_tail_of_a_graph_with_no_nodes_is_empty() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
    )
    assert tail_nodes(graph) == []


def test_quantize_metadata_is_json(tmp_path: Path) -> None:
    report = quantize_onnx(
        _model(tmp_path / "m.onnx"), calib_samples=_samples(2), out=tmp_path / "q.onnx", method="percentile"
    )
    props = _props(report.path)
    quant = {k: json.loads(v) for k, v in props.items() if k.startswith("detops_quant.")}
    assert quant == {
        "detops_quant.method": "percentile",
        "detops_quant.calib_images": 2,
        "detops_quant.excluded_nodes": ["head/sigmoid", "head/conv"],
    }
    assert json.loads(props["detops.precision"]) == "int8"
