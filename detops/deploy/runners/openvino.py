"""The ``openvino`` backend: the same ONNX file compiled by OpenVINO for the CPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detops.deploy.artifact import ArtifactMeta, read_onnx_metadata
from detops.deploy.preprocess import preprocess
from detops.deploy.runners.base import Batch, Detections, RunnerBase, family_detections
from detops.deploy.runners.ort import graph_feed
from detops.errors import DetopsError

_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


class OpenVinoRunner(RunnerBase):
    """OpenVINO's CPU plugin with a latency hint and an explicit inference precision (f32 unless asked:
    OpenVINO would otherwise pick bf16 on CPUs that have it). A dynamic-batch graph is compiled once
    per batch size seen, with the batch made static, so the plugin can plan memory and fold shapes."""

    backend = "openvino"

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        precision: str | None = None,
        threads: int | None = None,
        input_size: int | None = None,
    ) -> None:
        import openvino as ov

        if device != "cpu":
            raise DetopsError(f"backend 'openvino' runs on the CPU here, not {device!r}")
        self.meta: ArtifactMeta = read_onnx_metadata(path)
        if input_size is not None and input_size != self.meta.input_size:
            raise DetopsError(f"{path}: the graph's input size is {self.meta.input_size}, not {input_size}")
        wanted = precision or ("fp32" if self.meta.precision in ("fp32", "int8") else self.meta.precision)
        if wanted not in _HINTS:
            raise DetopsError(f"backend 'openvino': precision must be fp32, fp16 or bf16, got {precision!r}")
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line text
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DetopsError(f"{path}: OpenVINO cannot read it ({first})") from None
        self.config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _HINTS[wanted],
        }
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.path = path
        self.device = device
        self.threads = threads
        self.input_names = [p.get_any_name() for p in self.model.inputs]
        self._compiled: dict[int, Any] = {}

    def _request(self, batch: int) -> Any:
        """An infer request of the model compiled for ``batch`` images (cached)."""
        if batch not in self._compiled:
            model = self.model.clone()
            if self.meta.batch is None:
                shapes = {}
                for port in model.inputs:
                    dims = port.get_partial_shape()
                    dims[0] = batch
                    shapes[port.get_any_name()] = dims
                model.reshape(shapes)
            compiled = self.core.compile_model(model, "CPU", self.config)
            self._compiled[batch] = (compiled, compiled.create_infer_request())
        return self._compiled[batch]

    def prepare(self, images: Sequence[np.ndarray]) -> Batch:
        """Preprocessed inputs plus the compiled request for this batch size (compiled on first use)."""
        array, sizes = preprocess(images, size=self.meta.input_size, pixel_scale=self.meta.pixel_scale)
        feed = graph_feed(self.meta, array, sizes, self.input_names)
        compiled, request = self._request(len(images))
        return Batch(
            inputs=feed,
            orig_sizes=sizes,
            size=self.meta.input_size,
            count=len(images),
            extra={"compiled": compiled, "request": request},
        )

    def infer(self, batch: Batch) -> dict[str, np.ndarray]:
        """One synchronous inference; outputs keyed by name (copied out of the request's buffers)."""
        compiled, request = batch.extra["compiled"], batch.extra["request"]
        request.infer(batch.inputs)
        return {
            port.get_any_name(): np.array(request.get_tensor(port).data, copy=True)
            for port in compiled.outputs
        }

    def postprocess(self, raw: dict[str, np.ndarray], batch: Batch) -> list[Detections]:
        """In-graph post-processing taken as is, else the family's post-processor."""
        return family_detections(self.meta, raw, orig_sizes=batch.orig_sizes, count=batch.count)
