"""The one interface every backend implements, and ``load_runner`` that picks a backend by name.

A runner turns uint8 RGB images at their original sizes into ``Detections`` in original pixels, doing
the family's pre- and post-processing. It exposes the three stages separately so that profiling can
time the model alone (``infer`` on a batch from ``prepare``) and the whole path (``__call__``).

Backends are registered in ``RUNNERS`` by name; each entry imports its module only when called, so a
machine without OpenVINO or TensorRT can still use the others. ``BACKEND_KINDS`` says which artifact
kind (see ``detops.deploy.artifact.artifact_kind``) each backend runs.

A backend module provides a class whose constructor is
``Cls(path: Path, *, device: str, precision: str | None, threads: int | None, input_size: int | None)``
and which satisfies ``Runner`` (inheriting ``RunnerBase`` gives ``__call__`` and ``synchronize``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from detops.deploy.artifact import ArtifactMeta, artifact_kind, resolve_artifact
from detops.errors import DetopsError


@dataclass(frozen=True)
class Detections:
    """Detections of one image, in its original pixels.

    Attributes:
        boxes: float32 [K, 4] xyxy.
        scores: float32 [K], in decreasing order.
        category_ids: int64 [K], the dataset's category ids.
        labels: int64 [K], contiguous labels 0..C-1 (index into ``ArtifactMeta.class_names``).
    """

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class Batch:
    """A prepared batch: the backend's input objects plus what post-processing needs.

    Attributes:
        inputs: backend-specific (a dict of numpy arrays for ONNX runtimes, a tensor for torch).
        orig_sizes: int64 [N, 2] original (height, width) of each image.
        size: the square network input size.
        count: number of real images (the rest, up to a fixed graph batch, is padding).
    """

    inputs: Any
    orig_sizes: np.ndarray
    size: int
    count: int
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Runner(Protocol):
    """What evaluation, profiling and prediction use; they never ask which backend it is."""

    meta: ArtifactMeta
    backend: str
    device: str
    threads: int | None

    def prepare(self, images: Sequence[np.ndarray]) -> Batch:
        """Preprocess uint8 RGB HWC images and allocate the backend's inputs."""
        ...

    def infer(self, batch: Batch) -> Any:
        """Run the model only (what ``model`` timing measures); returns raw outputs."""
        ...

    def postprocess(self, raw: Any, batch: Batch) -> list[Detections]:
        """Raw outputs -> one ``Detections`` per real image of ``batch``."""
        ...

    def synchronize(self) -> None:
        """Wait until queued device work has finished (no-op on CPU)."""
        ...

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """End to end: ``postprocess(infer(prepare(images)))``, split to the graph's batch if fixed."""
        ...


class RunnerBase:
    """Shared behaviour: end-to-end call (chunked and padded for fixed-batch graphs) and a no-op sync."""

    meta: ArtifactMeta

    def prepare(self, images: Sequence[np.ndarray]) -> Batch:  # pragma: no cover - overridden
        raise NotImplementedError

    def infer(self, batch: Batch) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def postprocess(self, raw: Any, batch: Batch) -> list[Detections]:  # pragma: no cover - overridden
        raise NotImplementedError

    def synchronize(self) -> None:
        """No queued device work on CPU backends."""

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for every image; a fixed-batch graph gets chunks of its batch, the last padded."""
        fixed = self.meta.batch
        if fixed is None or len(images) == fixed:
            batch = self.prepare(images)
            return self.postprocess(self.infer(batch), batch)
        out: list[Detections] = []
        for start in range(0, len(images), fixed):
            chunk = list(images[start : start + fixed])
            real = len(chunk)
            chunk += [chunk[-1]] * (fixed - real)
            batch = self.prepare(chunk)
            out += self.postprocess(self.infer(batch), batch)[:real]
        return out


def to_detections(
    meta: ArtifactMeta, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray
) -> Detections:
    """Build ``Detections`` from per-image arrays, mapping labels to the artifact's category ids."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    ids = np.asarray(meta.category_ids, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= ids.size):
        raise DetopsError(
            f"{meta.variant}: model produced label {int(labels.max())} beyond {ids.size} classes"
        )
    return Detections(
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.asarray(scores, dtype=np.float32).reshape(-1),
        category_ids=ids[labels],
        labels=labels,
    )


def end2end_detections(
    meta: ArtifactMeta, outputs: dict[str, Any], *, orig_sizes: np.ndarray, count: int
) -> list[Detections]:
    """Outputs of an end-to-end graph or engine (``meta.end2end``) -> detections in original pixels.

    Args:
        outputs: ``num_dets`` [B] (TensorRT's EfficientNMS: [B, 1], int32), ``boxes`` [B, K, 4] xyxy in
            network-input pixels, ``scores`` [B, K], ``labels`` [B, K] (any integer type); entries past
            ``num_dets`` are padding.
        orig_sizes: int64 [B, 2] original (height, width).
        count: real images (the first ``count`` rows).
    Boxes are scaled by (width, height) / input size per axis, as the families' post-processors do
    (the network input is a stretch resize).
    """
    nums = np.asarray(outputs["num_dets"]).reshape(-1)
    boxes = np.asarray(outputs["boxes"], dtype=np.float32)
    size = float(meta.input_size)
    out = []
    for i in range(count):
        n = int(nums[i])
        h, w = (float(v) for v in orig_sizes[i])
        factor = np.asarray([w / size, h / size, w / size, h / size], dtype=np.float32)
        out.append(
            to_detections(meta, boxes[i, :n] * factor, outputs["scores"][i, :n], outputs["labels"][i, :n])
        )
    return out


def family_detections(
    meta: ArtifactMeta, outputs: dict[str, Any], *, orig_sizes: np.ndarray, count: int
) -> list[Detections]:
    """Raw outputs of either family (the model's dict, or an ONNX graph's named outputs) -> detections.

    End-to-end graphs (``meta.end2end``) go through ``end2end_detections`` (no NMS here). Graphs with
    post-processing inside (RT-DETRv2: ``labels``, ``boxes`` in original pixels, ``scores``) are taken
    as they are; otherwise the family's own post-processor (the one the engine evaluates with) runs on
    the outputs, so a deployed graph is scored exactly like its checkpoint.
    """
    if meta.end2end:
        return end2end_detections(meta, outputs, orig_sizes=orig_sizes, count=count)
    if {"labels", "boxes", "scores"} <= set(outputs):
        return [
            to_detections(
                meta,
                np.asarray(outputs["boxes"][i]),
                np.asarray(outputs["scores"][i]),
                np.asarray(outputs["labels"][i]),
            )
            for i in range(count)
        ]
    import torch

    import models

    post = models.build_postprocessor(meta.variant, num_classes=meta.num_classes)
    # Only the arrays post-processing reads; training-only extras (aux lists) are dropped.
    tensors = {
        k: (v.float() if v.is_floating_point() else v)
        if isinstance(v, torch.Tensor)
        else torch.from_numpy(np.asarray(v))
        for k, v in outputs.items()
        if isinstance(v, (torch.Tensor, np.ndarray))
    }
    first = next(iter(tensors.values()))
    sizes = torch.from_numpy(np.asarray(orig_sizes[:count], dtype=np.int64)).to(first.device)
    tensors = {k: v[:count] for k, v in tensors.items()}
    dets = post(tensors, image_size=(meta.input_size, meta.input_size), orig_sizes=sizes)
    return [
        to_detections(
            meta,
            d["boxes"].float().cpu().numpy(),
            d["scores"].float().cpu().numpy(),
            d["labels"].cpu().numpy(),
        )
        for d in dets
    ]


BACKEND_KINDS: dict[str, str] = {
    "torch": "checkpoint",
    "ort": "onnx",
    "openvino": "onnx",
    "tensorrt": "tensorrt",
}

BACKEND_DEVICES: dict[str, str] = {"tensorrt": "cuda"}
"""The device a backend runs on when none is named: ``cuda`` for TensorRT, ``cpu`` for the others."""

_BACKEND_CLASSES: dict[str, tuple[str, str]] = {
    "torch": ("detops.deploy.runners.torch_runner", "TorchRunner"),
    "ort": ("detops.deploy.runners.ort", "OrtRunner"),
    "openvino": ("detops.deploy.runners.openvino", "OpenVinoRunner"),
    "tensorrt": ("detops.deploy.runners.tensorrt", "TensorRTRunner"),
}


def _lazy(backend: str) -> Callable[..., Runner]:
    module_name, class_name = _BACKEND_CLASSES[backend]

    def factory(path: Path, **options: Any) -> Runner:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DetopsError(f"backend {backend!r} is not available here ({exc})") from None
        cls: Callable[..., Runner] = getattr(module, class_name)
        return cls(path, **options)

    factory.__doc__ = f"Import {module_name} and build its {class_name}."
    return factory


RUNNERS: dict[str, Callable[..., Runner]] = {name: _lazy(name) for name in _BACKEND_CLASSES}


def load_runner(
    artifact: str | os.PathLike[str],
    *,
    backend: str,
    device: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    input_size: int | None = None,
) -> Runner:
    """A ready ``Runner`` for ``artifact`` on ``backend``.

    Args:
        artifact: a file or run directory (see ``resolve_artifact``).
        backend: a key of ``RUNNERS``: ``torch``, ``ort``, ``openvino`` or ``tensorrt``.
        device: ``cpu`` or ``cuda``; ``None``: the backend's own (``BACKEND_DEVICES``, else ``cpu``).
        precision: ``None`` for the artifact's own; ``fp16``/``bf16`` autocast for torch, an inference
            precision hint for OpenVINO.
        threads: intra-op CPU threads (``None``: the runtime's default).
        input_size: square input size; only checkpoints can change it, graphs must match their own.
    Raises:
        DetopsError: one line for an unknown backend, a missing artifact, or a kind the backend cannot run.
    """
    if backend not in RUNNERS:
        raise DetopsError(f"unknown backend {backend!r}; choose one of {', '.join(RUNNERS)}")
    device = device or BACKEND_DEVICES.get(backend, "cpu")
    if device not in ("cpu", "cuda"):
        raise DetopsError(f"--device must be cpu or cuda, got {device!r}")
    if threads is not None and threads < 1:
        raise DetopsError(f"--threads must be at least 1, got {threads}")
    path = resolve_artifact(artifact)
    kind = artifact_kind(path)
    wanted = BACKEND_KINDS.get(backend)
    if wanted is not None and kind != wanted:
        raise DetopsError(f"{path}: backend {backend!r} runs {wanted} artifacts, this is a {kind} file")
    return RUNNERS[backend](path, device=device, precision=precision, threads=threads, input_size=input_size)
