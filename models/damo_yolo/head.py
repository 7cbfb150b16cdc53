"""ZeroHead: per-level 3x3 classification and distribution-regression convs (GFL, DFL integral).

With ``stacked_convs=0`` (every released variant) the head is only ``gfl_cls``, ``gfl_reg`` and the
per-level ``scales``; ``integral.project`` is the [reg_max + 1] bin-value buffer.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn


class Scale(nn.Module):
    """Multiply by a learnable 0-d scalar ``scale``."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class Integral(nn.Module):
    """Expectation of a softmax distribution over bins 0..reg_max: [..., reg_max+1] logits -> [...]."""

    project: Tensor

    def __init__(self, reg_max: int):
        super().__init__()
        self.register_buffer("project", torch.linspace(0, reg_max, reg_max + 1))

    def forward(self, logits: Tensor) -> Tensor:
        # Elementwise product + sum (not matmul) keeps the FLOP count to convolutions, like upstream's.
        return (logits.softmax(dim=-1) * self.project).sum(dim=-1)


def anchor_points(
    feature_sizes: list[tuple[int, int]],
    strides: tuple[int, ...],
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """Anchor points of all levels, level-major then row-major.

    Returns:
        (points [A, 2] as (col * stride, row * stride) in input pixels - no half-cell offset, as
        upstream - and strides [A]).
    """
    points, stride_list = [], []
    for (h, w), stride in zip(feature_sizes, strides, strict=True):
        ys, xs = torch.meshgrid(
            torch.arange(h, device=device, dtype=dtype),
            torch.arange(w, device=device, dtype=dtype),
            indexing="ij",
        )
        points.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=-1) * stride)
        stride_list.append(torch.full((h * w,), float(stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_list)


def distance_to_box(points: Tensor, distances: Tensor) -> Tensor:
    """(left, top, right, bottom) distances [..., 4] from points [..., 2] -> xyxy boxes [..., 4]."""
    return torch.cat((points - distances[..., :2], points + distances[..., 2:]), dim=-1)


class ZeroHead(nn.Module):
    """GFL head without conv towers.

    ``forward`` takes the neck maps [B, C_i, H_i, W_i] and returns a dict:
    ``cls_logits`` [B, A, num_classes] (before the sigmoid; what the loss takes), ``scores``
    [B, A, num_classes] (their sigmoid; what post-processing and export take), ``reg_logits``
    [B, A, 4, reg_max+1] (scaled, before softmax; sides left, top, right, bottom), ``boxes``
    [B, A, 4] xyxy input pixels, ``anchor_points`` [A, 2], ``strides`` [A].
    """

    def __init__(
        self, *, in_channels: tuple[int, ...], num_classes: int, strides: tuple[int, ...], reg_max: int
    ):
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.reg_max = reg_max
        self.integral = Integral(reg_max)
        self.gfl_cls = nn.ModuleList(nn.Conv2d(c, num_classes, 3, padding=1) for c in in_channels)
        self.gfl_reg = nn.ModuleList(nn.Conv2d(c, 4 * (reg_max + 1), 3, padding=1) for c in in_channels)
        self.scales = nn.ModuleList(Scale(1.0) for _ in in_channels)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, 0.01) weights; class bias at prior probability 0.01; regression bias 0."""
        for conv in self.gfl_cls:
            self.reset_class_conv(cast(nn.Conv2d, conv))
        for conv in self.gfl_reg:
            reg = cast(nn.Conv2d, conv)
            nn.init.normal_(reg.weight, std=0.01)
            nn.init.zeros_(cast(Tensor, reg.bias))

    @staticmethod
    @torch.no_grad()
    def reset_class_conv(conv: nn.Conv2d) -> None:
        """Initialise one class conv: N(0, 0.01) weight, bias -log((1 - 0.01) / 0.01)."""
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.constant_(cast(Tensor, conv.bias), -math.log((1 - 0.01) / 0.01))

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        cls_logits, scores, reg_logits, sizes = [], [], [], []
        for x, cls_conv, reg_conv, scale in zip(
            features, self.gfl_cls, self.gfl_reg, self.scales, strict=True
        ):
            b, _, h, w = x.shape
            sizes.append((h, w))
            cls = cls_conv(x)
            cls_logits.append(cls.flatten(2).transpose(1, 2))
            # Under autocast this sigmoid is float16 / bfloat16 and reaches exactly 1.0 from a logit
            # of ~8.3 / ~6.2: fine for ranking detections, not for a loss, hence the logits too.
            # Taken per level before the reshape, so the exported graph (scores only) is unchanged.
            scores.append(cls.sigmoid().flatten(2).transpose(1, 2))
            reg = scale(reg_conv(x)).reshape(b, 4, self.reg_max + 1, h * w)
            reg_logits.append(reg.permute(0, 3, 1, 2))
        scores_t = torch.cat(scores, dim=1)
        reg_t = torch.cat(reg_logits, dim=1)
        points, strides = anchor_points(sizes, self.strides, device=reg_t.device, dtype=reg_t.dtype)
        distances = self.integral(reg_t) * strides[:, None]
        boxes = distance_to_box(points, distances)
        return {
            "cls_logits": torch.cat(cls_logits, dim=1),
            "scores": scores_t,
            "boxes": boxes,
            "reg_logits": reg_t,
            "anchor_points": points,
            "strides": strides,
        }
