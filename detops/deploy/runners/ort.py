"""The ``ort`` backend: an exported ONNX file in ONNX Runtime (CPU provider; CUDA provider on request)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detops.deploy.artifact import ArtifactMeta
from detops.deploy.preprocess import preprocess
from detops.deploy.runners.base import Batch, Detections, RunnerBase, family_detections
from detops.errors import DetopsError


def graph_feed(
    meta: ArtifactMeta, array: np.ndarray, sizes: np.ndarray, input_names: list[str]
) -> dict[str, np.ndarray]:
    """The input dict of a detops graph: ``images``, plus ``orig_target_sizes`` (width, height) when the
    graph takes it (RT-DETRv2's post-processing inside the graph)."""
    feed = {"images": array}
    if "orig_target_sizes" in input_names:
        feed["orig_target_sizes"] = np.ascontiguousarray(sizes[:, ::-1])
    return feed


class OrtRunner(RunnerBase):
    """One ``InferenceSession`` with all graph optimisations; ``threads`` sets intra-op threads."""

    backend = "ort"

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        precision: str | None = None,
        threads: int | None = None,
        input_size: int | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DetopsError("backend 'ort': --device cuda but onnxruntime has no CUDA provider here")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DetopsError(f"{path}: ONNX Runtime cannot load it ({first})") from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta: ArtifactMeta = ArtifactMeta.from_metadata_props(props, source=str(path))
        if precision is not None and precision != self.meta.precision:
            raise DetopsError(
                f"{path}: backend 'ort' runs the graph's own precision {self.meta.precision}, not {precision}"
            )
        if input_size is not None and input_size != self.meta.input_size:
            raise DetopsError(f"{path}: the graph's input size is {self.meta.input_size}, not {input_size}")
        self.path = path
        self.device = device
        self.threads = threads
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def prepare(self, images: Sequence[np.ndarray]) -> Batch:
        """Preprocessed numpy inputs keyed by graph input name."""
        array, sizes = preprocess(images, size=self.meta.input_size, pixel_scale=self.meta.pixel_scale)
        feed = graph_feed(self.meta, array, sizes, self.input_names)
        return Batch(inputs=feed, orig_sizes=sizes, size=self.meta.input_size, count=len(images))

    def infer(self, batch: Batch) -> dict[str, Any]:
        """``session.run`` -> outputs keyed by graph output name."""
        return dict(zip(self.output_names, self.session.run(None, batch.inputs), strict=True))

    def postprocess(self, raw: dict[str, Any], batch: Batch) -> list[Detections]:
        """In-graph post-processing taken as is, else the family's post-processor."""
        return family_detections(self.meta, raw, orig_sizes=batch.orig_sizes, count=batch.count)
