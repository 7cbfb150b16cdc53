"""Build a TensorRT 10 engine from an ONNX file: parse (errors per node), one optimisation profile for
the dynamic batch axis, fp32/fp16/int8 (entropy calibration), a persistent timing cache, and an
atomically written engine next to its JSON stamp.

Only the documented TensorRT 10 Python API is used (``Builder.build_serialized_network``,
``IBuilderConfig.set_memory_pool_limit``, ``create_timing_cache``/``set_timing_cache``, named
optimisation-profile shapes); ``tensorrt`` is imported inside ``build_engine`` only.

An end-to-end DAMO-YOLO file (``ArtifactMeta.end2end`` with an IoU threshold) is built with TensorRT's
``EfficientNMS_TRT`` plugin in place of its ONNX NMS tail: the graph is cut at the model's raw
outputs (``raw_boxes`` [B, A, 4] xyxy, ``raw_scores`` [B, A, C], named by the export), the cut is
parsed, and the plugin (the file's thresholds and K, class-aware, no activation, no background class,
box coding 0 = corners) takes them and gives the engine its ``num_dets`` [B, 1], ``boxes`` [B, K, 4],
``scores`` [B, K], ``labels`` [B, K] outputs (int32 counts and labels). End-to-end RT-DETRv2 files have
no NMS and are built as they are. Where EfficientNMS can differ from the ONNX graph: it keeps at most
4096 candidates per image above the score threshold before NMS (the plugin's ``numSelectedBoxes``)
and sorts scores at reduced precision, so near-ties and very crowded images may come out differently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from detops.deploy.tensorrt.calibrator import Batch, CalibrationFeed, cuda_tensor, entropy_calibrator
from detops.deploy.tensorrt.stamp import (
    PRECISIONS,
    DeviceInfo,
    EngineStamp,
    capability_str,
    write_stamp,
)
from detops.errors import DetopsError
from detops.fileio import atomic_open, sha256_file

INSTALL_HINT = (
    "TensorRT is not installed: on a machine with an NVIDIA GPU run `pip install 'detops[trt]'` "
    "(tensorrt>=10,<11)"
)


@dataclass(frozen=True)
class BuildReport:
    """Where the engine and its stamp went, and what the build used."""

    engine: Path
    stamp: Path
    stamp_fields: EngineStamp
    timing_cache: Path | None
    timing_cache_loaded: bool
    calib_cache: Path | None
    calibration_batches: int
    build_seconds: float


def import_tensorrt() -> Any:
    """``import tensorrt`` (10.x), or a one-line ``DetopsError`` saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise DetopsError(INSTALL_HINT) from None
    major = str(getattr(trt, "__version__", "0")).split(".")[0]
    if major != "10":
        raise DetopsError(f"TensorRT {trt.__version__} is installed; detops needs 10.x (tensorrt>=10,<11)")
    return trt


def cuda_device() -> DeviceInfo:
    """Name and compute capability of CUDA device 0 (through torch)."""
    import torch

    if not torch.cuda.is_available():
        raise DetopsError("no CUDA device: TensorRT engines are built and run on an NVIDIA GPU")
    return DeviceInfo(torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0)))  # type: ignore[arg-type]


def tensorrt_status() -> dict[str, Any]:
    """Whether this machine can build TensorRT engines: ``{"available", "detail"}`` (the reason when
    not, e.g. the module is missing or there is no CUDA device)."""
    try:
        trt = import_tensorrt()
        device = cuda_device()
    except DetopsError as exc:
        return {"available": False, "detail": str(exc)}
    return {"available": True, "detail": f"TensorRT {trt.__version__} on {device}"}


def profile_shapes(
    name: str, shape: tuple[int, ...], *, min_batch: int, opt_batch: int, max_batch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one network input whose only dynamic axis is the batch (axis 0).

    ``shape`` is the network's, with -1 for a dynamic axis; a static batch must lie in the range.
    """
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise DetopsError(
            f"batch range must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}"
        )
    rest = tuple(int(d) for d in shape[1:])
    if any(d < 1 for d in rest):
        raise DetopsError(
            f"input {name} has shape {list(shape)}: only the batch axis may be dynamic (export at a fixed size)"
        )
    if shape and int(shape[0]) > 0 and not min_batch <= int(shape[0]) <= max_batch:
        raise DetopsError(f"input {name} has a static batch of {shape[0]}, outside {min_batch}..{max_batch}")
    return (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest)


# The export names the model's raw outputs inside an end-to-end DAMO-YOLO graph so (DamoYoloEnd2End).
RAW_BOXES, RAW_SCORES = "raw_boxes", "raw_scores"
END2END_OUTPUTS = ("num_dets", "boxes", "scores", "labels")
EFFICIENT_NMS = ("EfficientNMS_TRT", "1")


def efficient_nms_fields(meta: Any) -> dict[str, tuple[float | int, str]]:
    """The EfficientNMS_TRT fields of an end-to-end ``ArtifactMeta``: ``{name: (value, "FLOAT32" | "INT32")}``."""
    return {
        "score_threshold": (float(meta.score_threshold), "FLOAT32"),
        "iou_threshold": (float(meta.iou_threshold), "FLOAT32"),
        "max_output_boxes": (int(meta.max_detections), "INT32"),
        "background_class": (-1, "INT32"),
        "score_activation": (0, "INT32"),  # the raw scores are already sigmoid outputs
        "class_agnostic": (0, "INT32"),  # class-wise NMS, as the library's batched_nms
        "box_coding": (0, "INT32"),  # corners (x1, y1, x2, y2)
    }


def cut_at_raw_outputs(onnx_path: Path) -> bytes:
    """The end-to-end graph up to ``raw_boxes`` and ``raw_scores`` (the NMS tail removed), serialised."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(onnx_path))
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    produced = {o for n in model.graph.node for o in n.output}
    missing = [n for n in (RAW_BOXES, RAW_SCORES) if n not in produced]
    if missing:
        raise DetopsError(f"{onnx_path}: an end-to-end file without {', '.join(missing)}; export it again")
    cut = Extractor(model).extract_model(inputs, [RAW_BOXES, RAW_SCORES])
    cut.metadata_props.extend(model.metadata_props)
    return bytes(cut.SerializeToString())


def add_efficient_nms(trt: Any, network: Any, logger: Any, meta: Any) -> Any:
    """Replace the network outputs ``raw_boxes``/``raw_scores`` by an EfficientNMS_TRT layer's four
    outputs, named ``END2END_OUTPUTS``; returns the layer."""
    outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
    boxes, scores = outputs[RAW_BOXES], outputs[RAW_SCORES]
    trt.init_libnvinfer_plugins(logger, "")
    creator = trt.get_plugin_registry().get_plugin_creator(*EFFICIENT_NMS, "")
    if creator is None:
        raise DetopsError("TensorRT has no EfficientNMS_TRT plugin (libnvinfer_plugin) here")
    types = {
        "FLOAT32": (trt.PluginFieldType.FLOAT32, np.float32),
        "INT32": (trt.PluginFieldType.INT32, np.int32),
    }
    fields = trt.PluginFieldCollection(
        [
            trt.PluginField(name, np.array([value], dtype=types[kind][1]), types[kind][0])
            for name, (value, kind) in efficient_nms_fields(meta).items()
        ]
    )
    plugin = creator.create_plugin("detops_efficient_nms", fields)
    layer = network.add_plugin_v2([boxes, scores], plugin)
    layer.name = "detops_efficient_nms"
    network.unmark_output(boxes)
    network.unmark_output(scores)
    for i, name in enumerate(END2END_OUTPUTS):
        tensor = layer.get_output(i)
        tensor.name = name
        network.mark_output(tensor)
    return layer


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path, model: bytes | None = None) -> Any:
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(model if model is not None else onnx_path.read_bytes(), str(onnx_path))
    if not ok or parser.num_errors:
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            errors.append(f"node {err.node()} ({err.node_name() or 'unnamed'}): {err.desc()}")
        raise DetopsError(
            f"{onnx_path}: TensorRT cannot parse the model: " + "; ".join(errors or ["no detail"])
        )
    return parser


def _nms_meta(onnx_path: Path) -> Any:
    """The ``ArtifactMeta`` of an end-to-end file with NMS inside (``None`` for any other file)."""
    from detops.deploy.artifact import read_onnx_metadata

    try:
        meta = read_onnx_metadata(onnx_path)
    except DetopsError:
        return None
    return meta if meta.end2end and meta.iou_threshold is not None else None


def _artifact_meta(onnx_path: Path, precision: str) -> dict[str, Any]:
    """The ONNX file's detops metadata with the engine's precision ({} for a graph without it)."""
    from dataclasses import replace

    from detops.deploy.artifact import read_onnx_metadata

    try:
        meta = read_onnx_metadata(onnx_path)
    except DetopsError:
        return {}
    return replace(meta, precision=precision, opset=None).to_dict()


def _inputs(network: Any) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        out.append((tensor.name, tuple(int(d) for d in tensor.shape)))
    return out


def build_engine(
    onnx_path: str | Path,
    *,
    out: str | Path | None = None,
    precision: str = "fp16",
    calib_batches: Iterable[Batch] | None = None,
    calib_batch_size: int = 8,
    calib_cache: str | Path | None = None,
    timing_cache: str | Path | None = None,
    workspace_gb: float = 4.0,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 32,
    device: DeviceInfo | None = None,
    to_device: Callable[[np.ndarray], Any] = cuda_tensor,
) -> BuildReport:
    """Build ``onnx_path`` into a TensorRT engine (default ``<onnx stem>.<precision>.engine``).

    An end-to-end DAMO-YOLO file gets the EfficientNMS_TRT plugin in place of its ONNX NMS (see the
    module docstring).

    Args:
        precision: fp32, fp16 (FP16 flag) or int8 (INT8 and FP16 flags; layers TensorRT cannot
            quantise fall back to fp16), which needs ``calib_batches`` or an existing ``calib_cache``.
        calib_batches: host batches (input name -> array, leading axis ``calib_batch_size``) for
            entropy calibration; see ``calibrator.batched``.
        calib_cache: calibration cache file, read when present (calibration is then skipped) and
            written after calibration (default ``<engine>.calib``).
        timing_cache: tactic timing cache file, loaded when present and saved after the build.
        workspace_gb: builder workspace memory-pool limit.
        min_batch, opt_batch, max_batch: the optimisation profile of the dynamic batch axis.
        device: the GPU the engine is for (default CUDA device 0; given explicitly in tests).
        to_device: host array -> device tensor for calibration (CUDA tensors by default).
    Raises:
        DetopsError: TensorRT missing or not 10.x, parse errors (one per node), a bad batch range or
            shape, or a failed build; nothing is written then.
    """
    if precision not in PRECISIONS:
        raise DetopsError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if workspace_gb <= 0:
        raise DetopsError(f"--workspace-gb must be > 0, got {workspace_gb}")
    src = Path(onnx_path)
    if not src.is_file():
        raise DetopsError(f"{src}: no such ONNX file")
    trt = import_tensorrt()
    dev = device if device is not None else cuda_device()
    engine_path = Path(out) if out is not None else src.with_name(f"{src.stem}.{precision}.engine")
    calib_path = (
        Path(calib_cache) if calib_cache is not None else engine_path.with_name(engine_path.name + ".calib")
    )
    if precision == "int8" and calib_batches is None and not calib_path.is_file():
        raise DetopsError(
            f"int8 needs calibration data (--calib-data ROOT) or a calibration cache {calib_path}"
        )
    started = time.perf_counter()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; STRONGLY_TYPED would forbid the FP16/INT8 flags.
    network = builder.create_network(0)
    nms_meta = _nms_meta(src)
    if nms_meta is None:
        _parse(trt, network, logger, src)
    else:
        _parse(trt, network, logger, src, model=cut_at_raw_outputs(src))
        add_efficient_nms(trt, network, logger, nms_meta)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    inputs = _inputs(network)
    profile = builder.create_optimization_profile()
    for name, shape in inputs:
        profile.set_shape(
            name, *profile_shapes(name, shape, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch)
        )
    config.add_optimization_profile(profile)

    feed = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        feed = CalibrationFeed(
            calib_batches if calib_batches is not None else (),
            batch_size=calib_batch_size,
            cache_file=calib_path,
            to_device=to_device,
        )
        calib_profile = builder.create_optimization_profile()
        for name, shape in inputs:
            lo, _, _ = profile_shapes(
                name,
                shape,
                min_batch=calib_batch_size,
                opt_batch=calib_batch_size,
                max_batch=calib_batch_size,
            )
            calib_profile.set_shape(name, lo, lo, lo)
        config.set_calibration_profile(calib_profile)
        config.int8_calibrator = entropy_calibrator(feed)

    cache_path = None if timing_cache is None else Path(timing_cache)
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    cache_loaded = bool(config.set_timing_cache(cache, False)) and bool(cache_bytes)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DetopsError(
            f"{src}: TensorRT failed to build a {precision} engine (see the log above)", exit_code=1
        )

    with atomic_open(engine_path, "wb") as fh:
        fh.write(memoryview(serialized))
    stamp = EngineStamp(
        artifact=_artifact_meta(src, precision),
        tensorrt_version=str(trt.__version__),
        gpu_name=dev.name,
        compute_capability=capability_str(dev.compute_capability),
        precision=precision,
        onnx_sha256=sha256_file(src),
        build_time=datetime.now(UTC).isoformat(timespec="seconds"),
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
    )
    stamp_file = write_stamp(engine_path, stamp)
    if cache_path is not None:
        with atomic_open(cache_path, "wb") as fh:
            fh.write(memoryview(config.get_timing_cache().serialize()))
    return BuildReport(
        engine=engine_path,
        stamp=stamp_file,
        stamp_fields=stamp,
        timing_cache=cache_path,
        timing_cache_loaded=cache_loaded,
        calib_cache=calib_path if precision == "int8" else None,
        calibration_batches=feed.batches_fed if feed is not None else 0,
        build_seconds=time.perf_counter() - started,
    )
