"""INT8 on the CPU: ONNX Runtime static quantization of an exported detops graph.

QDQ format (QuantizeLinear/DequantizeLinear pairs, which both ONNX Runtime and OpenVINO execute with
int8 kernels), per-channel int8 weights, uint8 activations calibrated on validation images through
the artifact's own preprocessing (MinMax, Entropy or Percentile). The graph's tail (the last weight
layers before each output, i.e. the detection heads' final convolutions or the decoder's score/box
projections, and the post-processing after them) stays fp32 by default: those layers map features
to scores and box offsets directly, so their quantisation error lands on the metric unfiltered. Which
nodes were kept in fp32 is returned, printed and stored in the file.

The output keeps the source's ``detops.*`` metadata with ``precision`` set to ``int8``, plus
``detops_quant.method``, ``detops_quant.calib_images`` and ``detops_quant.excluded_nodes`` (JSON).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from detops.deploy.artifact import read_onnx_metadata
from detops.errors import DetopsError
from detops.fileio import atomic_path

METHODS = ("minmax", "entropy", "percentile")
QUANT_PREFIX = "detops_quant."
WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
SHAPE_OPS = frozenset({"Shape", "Size"})


@dataclass(frozen=True)
class QuantizeReport:
    """What ``quantize_onnx`` wrote and how."""

    path: Path
    method: str
    calib_images: int
    excluded_nodes: tuple[str, ...]
    quantized_nodes: int
    excluded_weight_layers: tuple[str, ...] = ()


def tail_nodes(graph: Any) -> list[str]:
    """Names of the nodes from which a graph output is reached without crossing a weight layer,
    plus those last weight layers themselves (pure: an ``onnx.GraphProto`` in, names out).

    The walk does not continue through ``Shape``/``Size`` (only the shape of their input is used).

    A weight layer is a Conv/ConvTranspose/MatMul/Gemm with a constant (initializer) operand. Walking
    back from every output, the walk stops at the first weight layer on each path.
    """
    initializers = {t.name for t in graph.initializer}
    producer: dict[str, Any] = {}
    for node in graph.node:
        for out in node.output:
            producer[out] = node
    seen: set[str] = set()
    order: list[str] = []
    stack = [o.name for o in graph.output]
    visited_tensors: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in visited_tensors or tensor not in producer:
            continue
        visited_tensors.add(tensor)
        node = producer[tensor]
        key = node.name or f"{node.op_type}:{node.output[0]}"
        if key not in seen:
            seen.add(key)
            order.append(key)
        if node.op_type in WEIGHT_OPS and any(i in initializers for i in node.input):
            continue
        if node.op_type in SHAPE_OPS:
            continue  # reads only its input's shape: the values upstream do not reach the output
        stack.extend(i for i in node.input if i and i not in initializers)
    return order


def _calibration_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]


def quantize_onnx(
    src: str | os.PathLike[str],
    *,
    calib_samples: Sequence[dict[str, np.ndarray]],
    out: str | os.PathLike[str] | None = None,
    method: str = "minmax",
    exclude: Sequence[str] | None = None,
) -> QuantizeReport:
    """Statically quantise the fp32 detops ONNX file ``src`` to int8 (QDQ) at ``out``.

    Args:
        src: an fp32 graph written by ``detops export`` (carries ``detops.*`` metadata).
        calib_samples: graph feeds (see ``detops.deploy.calibration.calibration_samples``); a
            fixed-batch graph gets them stacked to its batch.
        out: destination (default ``<src stem>.int8.onnx``), written atomically.
        method: activation calibration, ``minmax``, ``entropy`` or ``percentile``.
        exclude: node names to keep in fp32; ``None`` keeps the graph's tail (see ``tail_nodes``),
            ``[]`` quantises everything.
    Raises:
        DetopsError: an unknown method, a source that is not fp32 detops ONNX, no calibration data,
            or a failure inside ONNX Runtime; nothing is written then.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationDataReader
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise DetopsError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    source = Path(src)
    meta = read_onnx_metadata(source)
    if meta.precision != "fp32":
        raise DetopsError(f"{source}: field precision is {meta.precision!r}; quantize an fp32 graph")
    if not calib_samples:
        raise DetopsError(f"{source}: no calibration images")
    dst = Path(out) if out is not None else source.with_name(f"{source.stem}.int8.onnx")
    feeds = list(calib_samples)
    if meta.batch is not None and meta.batch > 1:
        from detops.deploy.tensorrt.calibrator import batched

        feeds = list(batched(feeds, meta.batch))

    model = onnx.load(str(source))
    graph_names = {n.name for n in model.graph.node}
    excluded = tail_nodes(model.graph) if exclude is None else list(exclude)
    unknown = [n for n in excluded if n not in graph_names]
    if unknown:
        raise DetopsError(f"{source}: --exclude names unknown node(s) {unknown[:5]}")

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds)

    with tempfile.TemporaryDirectory(prefix="detops-quant-") as tmp_dir, atomic_path(dst) as tmp:
        prepared = Path(tmp_dir) / "prepared.onnx"
        # Shape inference (and ORT's graph optimisations) so every tensor to calibrate has a shape;
        # node names survive it, so the exclusion list still applies. ONNX's own shape inference is
        # enough for these graphs; ORT's symbolic pass is skipped because, on the graphs it gives up
        # on, it dumps a model and its external data into the working directory.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        prepared_names = {n.name for n in onnx.load(str(prepared), load_external_data=False).graph.node}
        try:
            quantize_static(
                str(prepared),
                str(tmp),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=[n for n in excluded if n in prepared_names],
                calibrate_method=_calibration_method(method),
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        except Exception as exc:  # ORT raises plain Exceptions/RuntimeErrors from deep inside
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DetopsError(f"{source}: ONNX Runtime quantization failed ({first})", exit_code=1) from None
        quantized = onnx.load(str(tmp))
        props = replace(meta, precision="int8").to_metadata_props()
        props |= {
            QUANT_PREFIX + "method": json.dumps(method),
            QUANT_PREFIX + "calib_images": json.dumps(len(calib_samples)),
            QUANT_PREFIX + "excluded_nodes": json.dumps(excluded),
        }
        kept = {
            p.key: p.value
            for p in quantized.metadata_props
            if not p.key.startswith(("detops.", QUANT_PREFIX))
        }
        del quantized.metadata_props[:]
        for key, value in (kept | props).items():
            entry = quantized.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(quantized, str(tmp))
        n_quant = sum(1 for n in quantized.graph.node if n.op_type == "QuantizeLinear")
    return QuantizeReport(
        path=dst,
        method=method,
        calib_images=len(calib_samples),
        excluded_nodes=tuple(excluded),
        quantized_nodes=n_quant,
        excluded_weight_layers=tuple(
            n.name for n in model.graph.node if n.name in set(excluded) and n.op_type in WEIGHT_OPS
        ),
    )


def read_quantization(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``detops_quant.*`` entries of a quantized file (``{}`` for an unquantized one)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {
        p.key[len(QUANT_PREFIX) :]: json.loads(p.value)
        for p in model.metadata_props
        if p.key.startswith(QUANT_PREFIX)
    }
