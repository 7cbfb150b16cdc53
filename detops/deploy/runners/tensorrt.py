"""The ``tensorrt`` backend: a stamped TensorRT 10 engine run with ``execute_async_v3`` on a CUDA stream.

Inputs and outputs are bound by tensor name (``set_input_shape`` / ``set_tensor_address``) to torch
tensors, so no pycuda is needed; output shapes are asked of the context after the input shapes are
set. With ``layer_profile=True`` an ``IProfiler`` collects per-layer milliseconds of every execution
(``layer_times()``). The engine's stamp is checked against this machine's TensorRT and GPU before
the engine is deserialised, and carries the artifact metadata (classes, input size) of its ONNX file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detops.deploy.artifact import ArtifactMeta
from detops.deploy.preprocess import preprocess
from detops.deploy.runners.base import Batch, Detections, RunnerBase, family_detections
from detops.deploy.runners.ort import graph_feed
from detops.deploy.tensorrt.build import cuda_device, import_tensorrt
from detops.deploy.tensorrt.stamp import DeviceInfo, check_compatible, read_stamp
from detops.errors import DetopsError


def layer_profiler(trt: Any, sink: dict[str, list[float]]) -> Any:
    """An ``IProfiler`` appending each reported layer time (ms) to ``sink[layer_name]``."""

    class _LayerTimes(trt.IProfiler):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            sink.setdefault(layer_name, []).append(float(ms))

    return _LayerTimes()


class TensorRTRunner(RunnerBase):
    """One engine, one execution context, one stream; I/O buffers are reused while shapes repeat.

    Args:
        path: the ``.engine`` file (its ``.engine.json`` stamp must sit next to it).
        device: must be ``cuda``.
        precision: ``None`` or the engine's own precision (an engine cannot change it).
        input_size: ``None`` or the engine's input size.
        layer_profile: attach an ``IProfiler`` (per-layer times; slows execution).
        gpu: the GPU to check the stamp against (default CUDA device 0).
        memory_device: torch device of the I/O buffers (``cuda``; tests with the API double use
            ``cpu``).
    """

    backend = "tensorrt"

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cuda",
        precision: str | None = None,
        threads: int | None = None,
        input_size: int | None = None,
        layer_profile: bool = False,
        gpu: DeviceInfo | None = None,
        memory_device: str = "cuda",
    ) -> None:
        import torch

        if device != "cuda":
            raise DetopsError(f"backend 'tensorrt' runs on a CUDA GPU: use --device cuda, not {device!r}")
        trt = import_tensorrt()
        stamp = read_stamp(path)
        check_compatible(
            stamp,
            tensorrt_version=str(trt.__version__),
            device=gpu if gpu is not None else cuda_device(),
            source=str(path),
        )
        if not stamp.artifact:
            raise DetopsError(
                f"{path}: the stamp has no artifact metadata (build from a `detops export` file)"
            )
        self.meta: ArtifactMeta = ArtifactMeta.from_dict(stamp.artifact, source=str(path))
        if precision is not None and precision != stamp.precision:
            raise DetopsError(f"{path}: the engine is {stamp.precision}; it cannot run as {precision}")
        if input_size is not None and input_size != self.meta.input_size:
            raise DetopsError(f"{path}: the engine's input size is {self.meta.input_size}, not {input_size}")
        self.path, self.device, self.threads = path, device, threads
        self.stamp = stamp
        self._torch_device = torch.device(memory_device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise DetopsError(f"{path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self._dtypes: dict[str, Any] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.input_names if is_input else self.output_names).append(name)
            np_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self._dtypes[name] = torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype
        self._stream = torch.cuda.Stream() if self._torch_device.type == "cuda" else None
        self._buffers: dict[str, Any] = {}
        self._layer_times: dict[str, list[float]] = {}
        if layer_profile:
            self.context.profiler = layer_profiler(trt, self._layer_times)

    def layer_times(self) -> dict[str, list[float]]:
        """Per-layer milliseconds of every execution so far (empty unless ``layer_profile``)."""
        return {k: list(v) for k, v in self._layer_times.items()}

    def prepare(self, images: Sequence[np.ndarray]) -> Batch:
        """Preprocessed host arrays keyed by engine input name."""
        array, sizes = preprocess(images, size=self.meta.input_size, pixel_scale=self.meta.pixel_scale)
        feed = graph_feed(self.meta, array, sizes, self.input_names)
        return Batch(inputs=feed, orig_sizes=sizes, size=self.meta.input_size, count=len(images))

    def _buffer(self, name: str, shape: tuple[int, ...]) -> Any:
        import torch

        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != shape:
            buf = torch.empty(shape, dtype=self._dtypes[name], device=self._torch_device)
            self._buffers[name] = buf
        return buf

    def infer(self, batch: Batch) -> dict[str, np.ndarray]:
        """Copy inputs in, ``execute_async_v3`` on the runner's stream, copy outputs out (synchronised)."""
        import torch

        stream = self._stream
        handle = int(stream.cuda_stream) if stream is not None else 0
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for name in self.input_names:
                host = np.ascontiguousarray(batch.inputs[name])
                if not self.context.set_input_shape(name, tuple(host.shape)):
                    raise DetopsError(
                        f"{self.path}: input {name} of shape {list(host.shape)} is outside the engine's profile "
                        f"(batch {self.stamp.min_batch}..{self.stamp.max_batch})"
                    )
                buf = self._buffer(name, tuple(host.shape))
                buf.copy_(torch.from_numpy(host).to(self._dtypes[name]), non_blocking=False)
                self.context.set_tensor_address(name, int(buf.data_ptr()))
            for name in self.output_names:
                buf = self._buffer(name, tuple(int(d) for d in self.context.get_tensor_shape(name)))
                self.context.set_tensor_address(name, int(buf.data_ptr()))
            if not self.context.execute_async_v3(handle):
                raise DetopsError(f"{self.path}: TensorRT execution failed", exit_code=1)
            self.synchronize()
        return {name: self._buffers[name].cpu().numpy() for name in self.output_names}

    def postprocess(self, raw: dict[str, np.ndarray], batch: Batch) -> list[Detections]:
        """In-graph post-processing taken as is, else the family's post-processor."""
        return family_detections(self.meta, raw, orig_sizes=batch.orig_sizes, count=batch.count)

    def synchronize(self) -> None:
        """Wait for the runner's CUDA stream."""
        if self._stream is not None:
            self._stream.synchronize()
