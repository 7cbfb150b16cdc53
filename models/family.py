"""The contract every detector family package implements (documentation and a typing Protocol).

Tensor conventions shared by both families and by the engine in ``detops``:

* ``images``: float32 [B, 3, H, W], RGB, value range per ``Variant.pixel_scale`` (255.0 or 1.0).
* ``targets``: one dict per image with ``"boxes"`` float32 [N, 4] **xyxy in network-input pixels**
  and ``"labels"`` int64 [N] in ``0..num_classes-1``. N may be 0.
* ``model(images, targets=None) -> dict[str, Tensor]``: the same raw dict in train and eval mode.
  ``targets`` is only read by families that need it in training (RT-DETRv2 denoising).
* ``criterion(outputs, targets, *, image_size=(H, W)) -> dict[str, Tensor]``: has ``"loss"`` (the
  scalar to backpropagate) plus one entry per weighted component.
* ``postprocessor(outputs, *, image_size=(H, W), orig_sizes) -> list[dict]``: ``orig_sizes`` int64
  [B, 2] as (height, width) of the original images; each dict has ``"boxes"`` [K, 4] xyxy in original
  pixels, ``"scores"`` [K], ``"labels"`` [K] int64 (contiguous 0..C-1).
* ``model.deploy()``: fuses re-parameterised branches in place (idempotent); outputs stay equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from models.variants import Variant


@dataclass(frozen=True)
class End2EndSettings:
    """What an end-to-end graph bakes in from its family's post-processing.

    Attributes:
        max_detections: K, the padded length of the per-image detection outputs.
        score_threshold: per-class score threshold (``None`` where the family has none, e.g. a top-K).
        iou_threshold: class-wise NMS IoU threshold (``None`` without NMS).
    """

    max_detections: int
    score_threshold: float | None = None
    iou_threshold: float | None = None


class ExportWrapper(Protocol):
    """An ``nn.Module`` that is exactly the ONNX graph of a deployed model, with its I/O description."""

    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    parity_outputs: list[str]
    """Outputs that must match PyTorch (all, unless a top-k makes the order among ties arbitrary)."""

    def example_inputs(self, batch: int, image_size: int) -> tuple[torch.Tensor, ...]: ...

    def __call__(self, *inputs: torch.Tensor) -> Any: ...


class Family(Protocol):
    """What ``models.damo_yolo`` and ``models.rtdetrv2`` each provide at package level."""

    VARIANTS: dict[str, Variant]

    def build_model(self, variant: Variant, *, num_classes: int) -> nn.Module: ...

    def build_criterion(self, variant: Variant, *, num_classes: int) -> nn.Module: ...

    def build_postprocessor(self, variant: Variant, *, num_classes: int) -> nn.Module: ...

    def count_params(self, model: nn.Module) -> int:
        """Parameter count in the convention upstream publishes (see ``Published.params_exact``)."""
        ...

    def count_gflops(self, model: nn.Module, *, image_size: int) -> float:
        """GFLOPs at ``image_size`` in the convention upstream publishes (eval, deploy form where due)."""
        ...

    def convert_official_checkpoint(
        self, variant: Variant, checkpoint: dict[str, Any], *, num_classes: int
    ) -> dict[str, torch.Tensor]:
        """Official release file contents (``torch.load`` result) -> a state dict for this package's
        model in train form. Pure: no I/O; raises ``ValueError`` naming the offending keys."""
        ...

    def export_wrapper(self, model: nn.Module) -> ExportWrapper:
        """Wrap a deployed eval-mode model as the module ``torch.onnx.export`` traces."""
        ...

    def end2end_settings(self, postprocessor: nn.Module) -> End2EndSettings:
        """K and thresholds of ``postprocessor`` (this family's), as the end-to-end graph uses them."""
        ...

    def end2end_wrapper(self, model: nn.Module, postprocessor: nn.Module) -> ExportWrapper:
        """The end-to-end graph: ``images`` -> ``num_dets`` [B], ``boxes`` [B, K, 4] xyxy input pixels,
        ``scores`` [B, K], ``labels`` [B, K] (padded to K), then the raw outputs named in its
        ``check_outputs`` (graph output -> key of the model's output dict), which the export compares
        with the library's post-processing and then drops from the file."""
        ...
