"""The DAMO-YOLO detector: backbone -> neck -> head, with RepConv fusion for deployment."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.damo_yolo.layers import RepConv


class DamoYolo(nn.Module):
    """``forward(images [B, 3, H, W] RGB 0-255, targets=None)`` -> the head's raw dict (same in train
    and eval): ``cls_logits`` [B, A, C], ``scores`` [B, A, C] (their sigmoid), ``boxes`` [B, A, 4]
    xyxy input pixels, ``reg_logits`` [B, A, 4, reg_max+1], ``anchor_points`` [A, 2], ``strides``
    [A]. H and W must be multiples of 32.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> dict[str, Tensor]:
        del targets  # assignment happens in the criterion
        h, w = images.shape[-2:]
        # Shapes are traced tensors under torch.onnx tracing; the check is for eager callers.
        if not torch.jit.is_tracing() and (h % 32 or w % 32):
            raise ValueError(f"DAMO-YOLO input height and width must be multiples of 32, got {h}x{w}")
        return self.head(self.neck(self.backbone(images)))

    def deploy(self) -> DamoYolo:
        """Fuse every RepConv into a single 3x3 conv in place (idempotent); returns ``self``."""
        for module in self.modules():
            if isinstance(module, RepConv):
                module.fuse()
        return self

    @property
    def deployed(self) -> bool:
        """True when no RepConv keeps its train-form branches."""
        return all(m.fused for m in self.modules() if isinstance(m, RepConv))
