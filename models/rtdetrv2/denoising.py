"""Contrastive denoising (CDN) query sampling for RT-DETR training, as a pure function."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from models.rtdetrv2.layers import inverse_sigmoid


@dataclass(frozen=True)
class DenoisingGroup:
    """Denoising queries for one batch.

    Attributes:
        labels: int64 [B, D] noised class ids (``num_classes`` = padding slot).
        box_logits: [B, D, 4] inverse-sigmoid of the noised normalised cxcywh boxes.
        attn_mask: bool [D + Q, D + Q]; True = may not attend (matching queries cannot see DN queries,
            DN groups cannot see each other).
        positive_idx: per image, int64 [num_gt * num_groups] query indices of the positive copies,
            group-major, so query ``positive_idx[i][g * num_gt + j]`` reconstructs GT ``j``.
        num_groups: number of (positive, negative) groups.
        num_denoising: D = 2 * max_gt * num_groups.
    """

    labels: Tensor
    box_logits: Tensor
    attn_mask: Tensor
    positive_idx: list[Tensor]
    num_groups: int
    num_denoising: int


def contrastive_denoising_group(
    labels: list[Tensor],
    boxes: list[Tensor],
    *,
    num_classes: int,
    num_queries: int,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> DenoisingGroup | None:
    """Build noised positive/negative GT copies; ``None`` when no image has any object.

    Args:
        labels: per image int64 [N_i] class ids.
        boxes: per image [N_i, 4] normalised cxcywh.
        num_classes: number of classes (label ``num_classes`` marks padding).
        num_queries: matching queries that follow the DN queries (for the attention mask).
        num_denoising: DN query budget; groups = max(1, num_denoising // max_gt).
        label_noise_ratio: a label is flipped to a random class with probability ratio / 2.
        box_noise_scale: corners move by up to (w/2, h/2) * scale * r, r in [0, 1) for positive and
            [1, 2) for negative copies.
        generator: optional RNG for reproducible noise.
    """
    num_gts = [int(t.shape[0]) for t in labels]
    max_gt = max(num_gts, default=0)
    if max_gt == 0:
        return None
    num_groups = max(1, num_denoising // max_gt)
    bs = len(num_gts)
    device = boxes[0].device
    dtype = boxes[0].dtype
    cls = torch.full((bs, max_gt), num_classes, dtype=torch.int64, device=device)
    box = torch.zeros((bs, max_gt, 4), dtype=dtype, device=device)
    pad = torch.zeros((bs, max_gt), dtype=torch.bool, device=device)
    for i, n in enumerate(num_gts):
        if n:
            cls[i, :n] = labels[i]
            box[i, :n] = boxes[i]
            pad[i, :n] = True
    cls = cls.tile(1, 2 * num_groups)
    box = box.tile(1, 2 * num_groups, 1)
    pad = pad.tile(1, 2 * num_groups)
    negative = torch.zeros((bs, 2 * max_gt, 1), dtype=dtype, device=device)
    negative[:, max_gt:] = 1
    negative = negative.tile(1, num_groups, 1)
    positive = (1 - negative).squeeze(-1).bool() & pad
    positive_idx = list(torch.nonzero(positive)[:, 1].split([n * num_groups for n in num_gts]))
    total = 2 * max_gt * num_groups

    def rand(shape: tuple[int, ...]) -> Tensor:
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)

    if label_noise_ratio > 0:
        flip = (rand(tuple(cls.shape)) < label_noise_ratio * 0.5) & pad
        # int32 / float draws consume the RNG as upstream does, so a seeded run reproduces its noise.
        new = torch.randint(
            0, num_classes, tuple(cls.shape), generator=generator, device=device, dtype=torch.int32
        ).to(torch.int64)
        cls = torch.where(flip, new, cls)
    if box_noise_scale > 0:
        xyxy = box_cxcywh_to_xyxy(box)
        diff = box[..., 2:].tile(1, 1, 2) * 0.5 * box_noise_scale
        sign = torch.randint(0, 2, tuple(box.shape), generator=generator, device=device, dtype=dtype) * 2 - 1
        part = rand(tuple(box.shape))
        part = (part + 1.0) * negative + part * (1 - negative)
        xyxy = (xyxy + sign * part * diff).clamp(0.0, 1.0)
        # Corners may cross (negative width/height); like upstream, these are not mirrored but
        # clamp to the smallest logit in inverse_sigmoid.
        box = box_xyxy_to_cxcywh(xyxy)
    box_logits = inverse_sigmoid(box)

    size = total + num_queries
    mask = torch.zeros((size, size), dtype=torch.bool, device=device)
    mask[total:, :total] = True
    step = 2 * max_gt
    for g in range(num_groups):
        lo, hi = step * g, step * (g + 1)
        mask[lo:hi, hi:total] = True
        mask[lo:hi, :lo] = True
    return DenoisingGroup(cls, box_logits, mask, positive_idx, num_groups, total)
