"""A recording test double of the TensorRT 10 Python API, injected as ``sys.modules["tensorrt"]``.

Only the documented TensorRT 10 surface detops uses exists here, with the documented parameter names;
classes have ``__slots__`` so that assigning an attribute TensorRT 10 removed (``max_workspace_size``,
``max_batch_size``) fails, and removed methods (``build_engine``, ``execute_async_v2``,
``set_binding_shape``, ``get_binding_index``) are simply absent. Every call that matters is appended
to ``module.calls`` as ``(name, details)``.

Behaviour stands in for the GPU: the parser reads the real ONNX file (unsupported operators are
configurable and reported per node like ``nvonnxparser``), the builder drives an attached INT8
calibrator the way TensorRT does (read cache; else ``get_batch`` until None, reading each device
pointer's memory; then write cache), and an engine executes the ONNX graph with ONNX Runtime,
reading inputs from and writing outputs to the raw addresses set with ``set_tensor_address`` (CPU
torch tensors' ``data_ptr()`` in tests).

Plugins: ``init_libnvinfer_plugins`` registers the one creator detops uses, ``EfficientNMS_TRT``
version 1, with its documented fields (unknown field names or wrong field types fail);
``get_plugin_registry().get_plugin_creator`` returns ``None`` before that call, as an unregistered
plugin would. ``INetworkDefinition.add_plugin_v2`` records the layer; the engine runs the plugin as the
library's class-wise NMS (``models.damo_yolo.postprocess.postprocess_single`` with the plugin's
thresholds and K) on the ONNX outputs it takes, with the plugin's int32 count and class outputs.
"""

from __future__ import annotations

import ctypes
import json
import types
from typing import Any

import numpy as np

MAGIC = b"FAKETRT10\n"


class _Enum:
    """Enum members as instances, so a wrong kind of value is caught by isinstance checks."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name

    def __repr__(self) -> str:
        return f"{self.kind}.{self.name}"


def _enum(kind: str, *names: str) -> type:
    return type(kind, (), {n: _Enum(kind, n) for n in names})


def build_fake(*, version: str = "10.3.0.26", unsupported_ops: tuple[str, ...] = ()) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module with an empty ``calls`` record."""
    trt = types.ModuleType("tensorrt")
    calls: list[tuple[str, dict[str, Any]]] = []
    trt.calls = calls  # type: ignore[attr-defined]
    trt.__version__ = version  # type: ignore[attr-defined]

    BuilderFlag = _enum(
        "BuilderFlag", "FP16", "BF16", "INT8", "FP8", "INT4", "DEBUG", "GPU_FALLBACK", "REFIT",
        "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS",
        "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE",
        "EXCLUDE_LEAN_RUNTIME", "STRIP_PLAN", "REFIT_IDENTICAL", "WEIGHT_STREAMING",
    )  # fmt: skip
    MemoryPoolType = _enum(
        "MemoryPoolType", "WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM",
        "TACTIC_DRAM", "TACTIC_SHARED_MEMORY",
    )  # fmt: skip
    NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH", "STRONGLY_TYPED")
    TensorIOMode = _enum("TensorIOMode", "NONE", "INPUT", "OUTPUT")
    DataType = _enum("DataType", "FLOAT", "HALF", "INT8", "INT32", "INT64", "BOOL", "UINT8", "BF16")
    ProfilingVerbosity = _enum("ProfilingVerbosity", "LAYER_NAMES_ONLY", "NONE", "DETAILED")
    PluginFieldType = _enum(
        "PluginFieldType",
        "FLOAT16",
        "FLOAT32",
        "FLOAT64",
        "INT8",
        "INT16",
        "INT32",
        "CHAR",
        "DIMS",
        "UNKNOWN",
    )
    onnx_to_dt = {
        1: DataType.FLOAT,
        10: DataType.HALF,
        6: DataType.INT32,
        7: DataType.INT64,
        9: DataType.BOOL,
    }
    dt_to_np = {
        "FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
        "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8,
    }  # fmt: skip

    def nptype(trt_type: _Enum) -> type:
        return dt_to_np[trt_type.name]

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (
            "INTERNAL_ERROR",
            "ERROR",
            "WARNING",
            "INFO",
            "VERBOSE",
        )

        def __init__(self, min_severity: str = "WARNING") -> None:
            self.min_severity = min_severity

    class ParserError:
        __slots__ = ("_node", "_name", "_desc")

        def __init__(self, node: int, name: str, desc: str) -> None:
            self._node, self._name, self._desc = node, name, desc

        def node(self) -> int:
            return self._node

        def node_name(self) -> str:
            return self._name

        def desc(self) -> str:
            return self._desc

        def code(self) -> str:
            return "UNSUPPORTED_NODE"

    class ITensor:
        __slots__ = ("name", "shape", "dtype")

        def __init__(self, name: str, shape: tuple[int, ...], dtype: _Enum) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class PluginField:
        __slots__ = ("name", "data", "type")

        def __init__(self, name: str, data: Any, type: _Enum) -> None:  # noqa: A002 (documented name)
            assert isinstance(type, _Enum) and type.kind == "PluginFieldType", type
            self.name, self.data, self.type = name, np.asarray(data), type

    class PluginFieldCollection(list):  # the binding is a list of PluginField
        pass

    class IPluginV2:
        __slots__ = ("plugin_type", "plugin_version", "name", "fields")

        def __init__(self, plugin_type: str, version: str, name: str, fields: dict[str, Any]) -> None:
            self.plugin_type, self.plugin_version, self.name, self.fields = plugin_type, version, name, fields

    # EfficientNMS_TRT's documented parameters and their types (TensorRT's plugin README).
    efficient_nms_fields = {
        "score_threshold": "FLOAT32", "iou_threshold": "FLOAT32", "max_output_boxes": "INT32",
        "background_class": "INT32", "score_activation": "INT32", "class_agnostic": "INT32",
        "box_coding": "INT32",
    }  # fmt: skip

    class IPluginCreator:
        __slots__ = ("name", "plugin_version", "plugin_namespace")

        def __init__(self, name: str, version: str) -> None:
            self.name, self.plugin_version, self.plugin_namespace = name, version, ""

        def create_plugin(self, name: str, field_collection: PluginFieldCollection) -> IPluginV2:
            assert isinstance(field_collection, PluginFieldCollection)
            fields = {}
            for f in field_collection:
                assert isinstance(f, PluginField)
                want = efficient_nms_fields.get(f.name)
                if want is None:
                    raise ValueError(f"EfficientNMS_TRT has no field {f.name!r}")
                if f.type.name != want or f.data.dtype != {"FLOAT32": np.float32, "INT32": np.int32}[want]:
                    raise TypeError(
                        f"EfficientNMS_TRT field {f.name} is {want}, got {f.type.name}/{f.data.dtype}"
                    )
                fields[f.name] = f.data.reshape(-1)[0].item()
            calls.append(
                ("IPluginCreator.create_plugin", {"type": self.name, "name": name, "fields": fields})
            )
            return IPluginV2(self.name, self.plugin_version, name, fields)

    class IPluginRegistry:
        __slots__ = ("creators",)

        def __init__(self) -> None:
            self.creators: dict[tuple[str, str, str], IPluginCreator] = {}

        def get_plugin_creator(self, type: str, version: str, plugin_namespace: str = "") -> Any:  # noqa: A002
            calls.append(("IPluginRegistry.get_plugin_creator", {"type": type, "version": version}))
            return self.creators.get((type, version, plugin_namespace))

    registry = IPluginRegistry()

    def get_plugin_registry() -> IPluginRegistry:
        return registry

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        assert isinstance(logger, Logger) and isinstance(namespace, str)
        registry.creators[("EfficientNMS_TRT", "1", namespace)] = IPluginCreator("EfficientNMS_TRT", "1")
        calls.append(("init_libnvinfer_plugins", {"namespace": namespace}))
        return True

    class IPluginV2Layer:
        __slots__ = ("name", "plugin", "inputs", "_outputs")

        def __init__(self, plugin: IPluginV2, inputs: list[ITensor]) -> None:
            batch = inputs[0].shape[0]
            k = int(plugin.fields["max_output_boxes"])
            self.name, self.plugin, self.inputs = "", plugin, inputs
            self._outputs = [
                ITensor("num_detections", (batch, 1), DataType.INT32),
                ITensor("detection_boxes", (batch, k, 4), DataType.FLOAT),
                ITensor("detection_scores", (batch, k), DataType.FLOAT),
                ITensor("detection_classes", (batch, k), DataType.INT32),
            ]

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        def get_output(self, index: int) -> ITensor:
            return self._outputs[index]

    class INetworkDefinition:
        __slots__ = ("flags", "_inputs", "_outputs", "onnx_bytes", "_plugins")

        def __init__(self, flags: int) -> None:
            self.flags, self._inputs, self._outputs, self.onnx_bytes = flags, [], [], b""
            self._plugins: list[IPluginV2Layer] = []

        def add_plugin_v2(self, inputs: list[ITensor], plugin: IPluginV2) -> IPluginV2Layer:
            assert isinstance(plugin, IPluginV2) and all(isinstance(t, ITensor) for t in inputs)
            layer = IPluginV2Layer(plugin, list(inputs))
            self._plugins.append(layer)
            calls.append(
                (
                    "INetworkDefinition.add_plugin_v2",
                    {"inputs": [t.name for t in inputs], "type": plugin.plugin_type},
                )
            )
            return layer

        def mark_output(self, tensor: ITensor) -> None:
            assert isinstance(tensor, ITensor) and tensor not in self._outputs
            self._outputs.append(tensor)
            calls.append(("INetworkDefinition.mark_output", {"name": tensor.name}))

        def unmark_output(self, tensor: ITensor) -> None:
            assert tensor in self._outputs, f"{tensor.name} is not an output"
            self._outputs.remove(tensor)
            calls.append(("INetworkDefinition.unmark_output", {"name": tensor.name}))

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        def get_input(self, index: int) -> ITensor:
            return self._inputs[index]

        def get_output(self, index: int) -> ITensor:
            return self._outputs[index]

    def _tensors(values: Any) -> list[ITensor]:
        out = []
        for v in values:
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
            out.append(ITensor(v.name, dims, onnx_to_dt[v.type.tensor_type.elem_type]))
        return out

    class OnnxParser:
        __slots__ = ("_network", "_errors")

        def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
            assert isinstance(network, INetworkDefinition) and isinstance(logger, Logger)
            self._network, self._errors = network, []

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

        def clear_errors(self) -> None:
            self._errors = []

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            proto = onnx.load_from_string(bytes(model))
            calls.append(("OnnxParser.parse", {"path": path, "nodes": len(proto.graph.node)}))
            for i, node in enumerate(proto.graph.node):
                if node.op_type in unsupported_ops:
                    self._errors.append(
                        ParserError(i, node.name, f"No importer registered for op: {node.op_type}")
                    )
            if self._errors:
                return False
            init = {t.name for t in proto.graph.initializer}
            self._network._inputs = _tensors([v for v in proto.graph.input if v.name not in init])
            self._network._outputs = _tensors(proto.graph.output)
            self._network.onnx_bytes = bytes(model)
            return True

    class IOptimizationProfile:
        __slots__ = ("shapes",)

        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (documented names)
            lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
            if not (len(lo) == len(mid) == len(hi)) or any(
                not a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)
            ):
                raise ValueError(f"profile shapes of {input} must satisfy min <= opt <= max")
            self.shapes[input] = (lo, mid, hi)
            calls.append(
                ("IOptimizationProfile.set_shape", {"input": input, "min": lo, "opt": mid, "max": hi})
            )

    class ITimingCache:
        __slots__ = ("data",)

        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data

    class IInt8Calibrator:
        def __init__(self) -> None:
            self._trt_initialised = True

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        pass

    class IProfiler:
        def __init__(self) -> None:
            self._trt_initialised = True

    class IBuilderConfig:
        __slots__ = ("flags", "pools", "profiles", "calibration_profile", "_calibrator", "timing_cache",
                     "profiling_verbosity", "builder_optimization_level")  # fmt: skip

        def __init__(self) -> None:
            self.flags: set[str] = set()
            self.pools: dict[str, int] = {}
            self.profiles: list[IOptimizationProfile] = []
            self.calibration_profile: IOptimizationProfile | None = None
            self._calibrator: Any = None
            self.timing_cache: ITimingCache | None = None
            self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
            self.builder_optimization_level = 3

        def set_flag(self, flag: _Enum) -> None:
            assert isinstance(flag, _Enum) and flag.kind == "BuilderFlag", flag
            self.flags.add(flag.name)
            calls.append(("IBuilderConfig.set_flag", {"flag": flag.name}))

        def get_flag(self, flag: _Enum) -> bool:
            return flag.name in self.flags

        def set_memory_pool_limit(self, pool: _Enum, pool_size: int) -> None:
            assert isinstance(pool, _Enum) and pool.kind == "MemoryPoolType", pool
            self.pools[pool.name] = int(pool_size)
            calls.append(
                ("IBuilderConfig.set_memory_pool_limit", {"pool": pool.name, "size": int(pool_size)})
            )

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            assert isinstance(profile, IOptimizationProfile)
            self.profiles.append(profile)
            calls.append(("IBuilderConfig.add_optimization_profile", {"shapes": dict(profile.shapes)}))
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
            self.calibration_profile = profile
            calls.append(("IBuilderConfig.set_calibration_profile", {"shapes": dict(profile.shapes)}))
            return True

        @property
        def int8_calibrator(self) -> Any:
            return self._calibrator

        @int8_calibrator.setter
        def int8_calibrator(self, calibrator: Any) -> None:
            if not isinstance(calibrator, IInt8Calibrator) or not getattr(
                calibrator, "_trt_initialised", False
            ):
                raise TypeError("int8_calibrator must be an initialised IInt8Calibrator")
            self._calibrator = calibrator
            calls.append(("IBuilderConfig.int8_calibrator", {"type": type(calibrator).__mro__[1].__name__}))

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
            data = bytes(serialized_timing_cache)
            calls.append(("IBuilderConfig.create_timing_cache", {"bytes": data}))
            return ITimingCache(data)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            assert isinstance(cache, ITimingCache) and isinstance(ignore_mismatch, bool)
            self.timing_cache = cache
            calls.append(("IBuilderConfig.set_timing_cache", {"ignore_mismatch": ignore_mismatch}))
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self.timing_cache

    def _efficient_nms(plugin: dict[str, Any], values: dict[str, np.ndarray]) -> list[np.ndarray]:
        """EfficientNMS_TRT's outputs, computed as the library's class-wise NMS with its fields."""
        import torch

        from models.damo_yolo.postprocess import postprocess_single

        assert plugin["type"] == "EfficientNMS_TRT"
        f = plugin["fields"]
        assert (f["background_class"], f["score_activation"], f["class_agnostic"], f["box_coding"]) == (
            -1,
            0,
            0,
            0,
        )
        boxes, scores = (values[n] for n in plugin["inputs"])
        k = int(f["max_output_boxes"])
        batch = boxes.shape[0]
        num = np.zeros((batch, 1), np.int32)
        out_boxes, out_scores = np.zeros((batch, k, 4), np.float32), np.zeros((batch, k), np.float32)
        out_labels = np.zeros((batch, k), np.int32)
        for b in range(batch):
            kb, ks, kl = postprocess_single(
                torch.from_numpy(scores[b]),
                torch.from_numpy(boxes[b]),
                score_threshold=f["score_threshold"],
                iou_threshold=f["iou_threshold"],
                max_detections=k,
            )
            n = ks.shape[0]
            num[b, 0] = n
            out_boxes[b, :n], out_scores[b, :n], out_labels[b, :n] = kb.numpy(), ks.numpy(), kl.numpy()
        return [num, out_boxes, out_scores, out_labels]

    def _read(ptr: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        raw = (ctypes.c_char * nbytes).from_address(ptr)
        return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape)

    class Builder:
        __slots__ = ("logger",)

        def __init__(self, logger: Logger) -> None:
            assert isinstance(logger, Logger)
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            assert isinstance(flags, int), "create_network takes an int bit mask"
            calls.append(("Builder.create_network", {"flags": flags}))
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig) -> None:
            calib = config.int8_calibrator
            assert config.calibration_profile is not None or len(config.profiles) == 1
            profile = config.calibration_profile or config.profiles[0]
            cache = calib.read_calibration_cache()
            calls.append(("calibrator.read_calibration_cache", {"hit": bool(cache)}))
            if cache:
                return
            batch = calib.get_batch_size()
            names = [network.get_input(i).name for i in range(network.num_inputs)]
            stats = []
            while True:
                ptrs = calib.get_batch(names)
                if ptrs is None:
                    break
                assert (
                    isinstance(ptrs, list)
                    and len(ptrs) == len(names)
                    and all(isinstance(p, int) for p in ptrs)
                )
                seen = {}
                for name, ptr in zip(names, ptrs, strict=True):
                    shape = profile.shapes[name][1]
                    assert shape[0] == batch, (
                        f"calibration profile batch {shape[0]} != get_batch_size {batch}"
                    )
                    tensor = network.get_input(names.index(name))
                    seen[name] = _read(ptr, shape, nptype(tensor.dtype)).copy()
                calls.append(("calibrator.get_batch", {"batch_size": batch, "inputs": seen}))
                stats.append({n: float(a.astype(np.float64).mean()) for n, a in seen.items()})
            assert stats, "calibration got no batch"
            calib.write_calibration_cache(b"TRT-100-EntropyCalibration2\n" + json.dumps(stats).encode())
            calls.append(("calibrator.write_calibration_cache", {"batches": len(stats)}))

        def build_serialized_network(
            self, network: INetworkDefinition, config: IBuilderConfig
        ) -> bytes | None:
            assert config.profiles, "dynamic inputs need an optimisation profile"
            for i in range(network.num_inputs):
                assert network.get_input(i).name in config.profiles[0].shapes, "input without profile shape"
            if "INT8" in config.flags and config.int8_calibrator is not None:
                self._calibrate(network, config)
            if config.timing_cache is not None:
                n = int(config.timing_cache.data.split(b":")[1]) if config.timing_cache.data else 0
                config.timing_cache.data = b"FAKECACHE:%d" % (n + 1)
            header = {
                "inputs": [(t.name, t.shape, t.dtype.name) for t in network._inputs],
                "outputs": [(t.name, t.shape, t.dtype.name) for t in network._outputs],
                "plugins": [
                    {
                        "type": layer.plugin.plugin_type,
                        "fields": layer.plugin.fields,
                        "inputs": [t.name for t in layer.inputs],
                        "outputs": [t.name for t in layer._outputs],
                    }
                    for layer in network._plugins
                ],
                "profile": {k: v for k, v in config.profiles[0].shapes.items()},
                "flags": sorted(config.flags),
            }
            calls.append(("Builder.build_serialized_network", {"flags": sorted(config.flags)}))
            head = json.dumps(header).encode()
            return MAGIC + len(head).to_bytes(8, "little") + head + network.onnx_bytes

    class IExecutionContext:
        __slots__ = ("_engine", "_shapes", "_addresses", "_profiler", "_session")

        def __init__(self, engine: ICudaEngine) -> None:
            self._engine, self._shapes, self._addresses, self._profiler = engine, {}, {}, None
            self._session: Any = None

        @property
        def profiler(self) -> Any:
            return self._profiler

        @profiler.setter
        def profiler(self, value: Any) -> None:
            if not isinstance(value, IProfiler) or not getattr(value, "_trt_initialised", False):
                raise TypeError("profiler must be an initialised IProfiler")
            self._profiler = value

        def set_input_shape(self, name: str, shape: Any) -> bool:
            lo, _, hi = self._engine.header["profile"][name]
            shape = tuple(int(d) for d in shape)
            ok = len(shape) == len(lo) and all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True))
            calls.append(("IExecutionContext.set_input_shape", {"name": name, "shape": shape, "ok": ok}))
            if ok:
                self._shapes[name] = shape
            return ok

        def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            """The engine's outputs in header order: the ONNX graph by ONNX Runtime, then its plugins."""
            import onnxruntime as ort

            if self._session is None:
                self._session = ort.InferenceSession(
                    self._engine.onnx_bytes, providers=["CPUExecutionProvider"]
                )
            names = [o.name for o in self._session.get_outputs()]
            values = dict(zip(names, self._session.run(None, feeds), strict=True))
            for plugin in self._engine.header.get("plugins", []):
                values.update(zip(plugin["outputs"], _efficient_nms(plugin, values), strict=True))
            return [values[o[0]] for o in self._engine.header["outputs"]]

        def _input_arrays(self, read: bool) -> dict[str, np.ndarray]:
            out = {}
            for name, _, dt in self._engine.header["inputs"]:
                shape = self._shapes[name]
                dtype = dt_to_np[dt]
                out[name] = _read(self._addresses[name], shape, dtype) if read else np.ones(shape, dtype)
            return out

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self._shapes:
                return self._shapes[name]
            names = [o[0] for o in self._engine.header["outputs"]]
            return tuple(self._run(self._input_arrays(read=False))[names.index(name)].shape)

        def set_tensor_address(self, name: str, memory: int) -> bool:
            assert isinstance(memory, int)
            self._addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            assert isinstance(stream_handle, int)
            names = [o[0] for o in self._engine.header["outputs"]]
            missing = [
                n for n in [i[0] for i in self._engine.header["inputs"]] + names if n not in self._addresses
            ]
            assert not missing, f"no address for {missing}"
            outputs = self._run(self._input_arrays(read=True))
            for name, arr in zip(names, outputs, strict=True):
                arr = np.ascontiguousarray(arr)
                ctypes.memmove(self._addresses[name], arr.ctypes.data, arr.nbytes)
            calls.append(("IExecutionContext.execute_async_v3", {"stream": stream_handle}))
            if self._profiler is not None:
                for i, node in enumerate(self._engine.node_names):
                    self._profiler.report_layer_time(node, 0.001 * (i + 1))
            return True

    class ICudaEngine:
        __slots__ = ("header", "onnx_bytes", "node_names")

        def __init__(self, header: dict[str, Any], onnx_bytes: bytes) -> None:
            import onnx

            self.header, self.onnx_bytes = header, onnx_bytes
            self.node_names = [n.name or n.op_type for n in onnx.load_from_string(onnx_bytes).graph.node]

        @property
        def num_io_tensors(self) -> int:
            return len(self.header["inputs"]) + len(self.header["outputs"])

        def _io(self) -> list[tuple[str, Any, str]]:
            return [tuple(t) for t in self.header["inputs"] + self.header["outputs"]]  # type: ignore[misc]

        def get_tensor_name(self, index: int) -> str:
            return self._io()[index][0]

        def get_tensor_mode(self, name: str) -> _Enum:
            return (
                TensorIOMode.INPUT if name in [t[0] for t in self.header["inputs"]] else TensorIOMode.OUTPUT
            )

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(next(t[1] for t in self._io() if t[0] == name))

        def get_tensor_dtype(self, name: str) -> _Enum:
            return getattr(DataType, next(t[2] for t in self._io() if t[0] == name))

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

    class Runtime:
        __slots__ = ("logger",)

        def __init__(self, logger: Logger) -> None:
            assert isinstance(logger, Logger)
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
            data = bytes(serialized_engine)
            calls.append(("Runtime.deserialize_cuda_engine", {"bytes": len(data)}))
            if not data.startswith(MAGIC):
                return None
            n = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 8], "little")
            start = len(MAGIC) + 8
            return ICudaEngine(json.loads(data[start : start + n]), data[start + n :])

    for name, obj in list(locals().items()):
        if name[0].isupper() or name in ("nptype", "get_plugin_registry", "init_libnvinfer_plugins"):
            setattr(trt, name, obj)
    return trt
