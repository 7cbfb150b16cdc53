"""The ``torch`` backend: a detops checkpoint or weight file in PyTorch, on CPU or CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import models
from detops.deploy.artifact import ArtifactMeta, meta_from_checkpoint
from detops.deploy.preprocess import preprocess
from detops.deploy.runners.base import Batch, Detections, RunnerBase, family_detections
from detops.errors import DetopsError
from detops.fileio import sha256_file

_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRunner(RunnerBase):
    """A checkpoint's model (EMA weights when present, re-parameterised branches fused) in eval mode.

    ``precision`` ``fp16``/``bf16`` runs the forward under autocast; outputs are post-processed in
    float32 by the family's post-processor, as the engine's evaluation does. ``threads`` sets torch's
    process-wide intra-op thread count.
    """

    backend = "torch"

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        precision: str | None = None,
        threads: int | None = None,
        input_size: int | None = None,
    ) -> None:
        from detops.engine.inference import load_model

        if precision not in (None, "fp32", *_AUTOCAST):
            raise DetopsError(f"backend 'torch': precision must be fp32, fp16 or bf16, got {precision!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise DetopsError("backend 'torch': --device cuda but no CUDA device is available")
        if threads is not None:
            torch.set_num_threads(threads)
        model, _, ckpt = load_model(path, device=device)
        deploy = getattr(model, "deploy", None)
        if callable(deploy):
            deploy()
        self.model = model.eval()
        self.meta: ArtifactMeta = meta_from_checkpoint(ckpt, sha256=sha256_file(path), input_size=input_size)
        try:
            models.check_input_size(self.meta.variant, self.meta.input_size)
        except ValueError as exc:
            raise DetopsError(f"--img-size {self.meta.input_size}: {exc}") from None
        self.path = path
        self.device = device
        self.threads = threads
        self.precision = precision or "fp32"
        self._device = torch.device(device)

    def prepare(self, images: Sequence[np.ndarray]) -> Batch:
        """Preprocess on the CPU and copy the batch to the device once."""
        array, sizes = preprocess(images, size=self.meta.input_size, pixel_scale=self.meta.pixel_scale)
        tensor = torch.from_numpy(array).to(self._device)
        return Batch(inputs=tensor, orig_sizes=sizes, size=self.meta.input_size, count=len(images))

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=_AUTOCAST[self.precision])

    @torch.no_grad()
    def infer(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The model's raw output dict (on the device)."""
        with self._autocast():
            out: dict[str, torch.Tensor] = self.model(batch.inputs)
        return out

    def postprocess(self, raw: dict[str, torch.Tensor], batch: Batch) -> list[Detections]:
        """The family's post-processor in float32, mapped to category ids."""
        return family_detections(self.meta, raw, orig_sizes=batch.orig_sizes, count=batch.count)

    def synchronize(self) -> None:
        """Wait for queued CUDA kernels."""
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
