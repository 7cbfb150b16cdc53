"""ONNX export wrapper: the deployed model plus top-K post-processing in one traced graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.rtdetrv2.postprocess import topk_detections


class RTDETRExportWrapper(nn.Module):
    """Graph inputs ``images`` [N, 3, S, S] float32 RGB in [0, 1] and ``orig_target_sizes`` [N, 2]
    int64 as (width, height) (upstream's order); outputs ``labels`` int64 [N, K], ``boxes`` float32
    [N, K, 4] xyxy in original pixels and ``scores`` float32 [N, K], K = min(300, Q * C).
    Only the batch axis is dynamic.
    """

    input_names = ["images", "orig_target_sizes"]
    output_names = ["labels", "boxes", "scores"]
    dynamic_axes = {name: {0: "N"} for name in input_names + output_names}
    # The graph ends in a top-k: among near-equal scores the order, and so the box and label at a
    # position, may differ between runtimes; the sorted scores must not.
    parity_outputs = ["scores"]

    def __init__(self, model: nn.Module, *, num_top_queries: int = 300) -> None:
        super().__init__()
        self.model = model
        self.num_top_queries = num_top_queries

    def forward(self, images: Tensor, orig_target_sizes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """images [N, 3, S, S], orig_target_sizes [N, 2] (w, h) -> (labels, boxes, scores)."""
        out = self.model(images)
        logits = out["pred_logits"]
        k = min(self.num_top_queries, logits.shape[1] * logits.shape[2])
        return topk_detections(logits, out["pred_boxes"], orig_target_sizes, num_top=k)

    def example_inputs(self, batch: int, image_size: int) -> tuple[Tensor, Tensor]:
        """Random images [batch, 3, S, S] in [0, 1] (seeded) and sizes [batch, 2] = (S, S) int64."""
        gen = torch.Generator().manual_seed(0)
        images = torch.rand(batch, 3, image_size, image_size, generator=gen)
        sizes = torch.tensor([[image_size, image_size]] * batch, dtype=torch.int64)
        return images, sizes


def export_wrapper(model: nn.Module, *, num_top_queries: int = 300) -> RTDETRExportWrapper:
    """Wrap a deployed (``model.deploy()``), eval-mode RT-DETRv2 for ``torch.onnx.export``."""
    if model.training:
        raise ValueError("export_wrapper needs an eval-mode model: call model.deploy() first")
    # A fresh module starts in train mode; torch.onnx.export restores that mode on every child after
    # tracing, which would silently put the wrapped model back into training.
    return RTDETRExportWrapper(model, num_top_queries=num_top_queries).eval()
