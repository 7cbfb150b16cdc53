"""Multi-scale deformable attention (RT-DETRv2 form) in pure PyTorch.

Sampling is either bilinear ``grid_sample`` (``"default"``) or a nearest-pixel gather
(``"discrete"``, no GridSample op in exported graphs). Points are ordered level-major
(all points of level 0, then level 1, ...), with one softmax over all points of a head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS = ("default", "discrete")


def deformable_attention_core(
    value: Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
    num_points: list[int],
    *,
    method: str = "default",
) -> Tensor:
    """Sample ``value`` at the given locations and take the attention-weighted sum per head.

    Args:
        value: [B, sum(H_l * W_l), heads, head_dim], levels concatenated row-major.
        spatial_shapes: (H_l, W_l) per level.
        sampling_locations: [B, Q, heads, sum(num_points), 2] as (x, y) in [0, 1] image fractions.
        attention_weights: [B, Q, heads, sum(num_points)] (already softmax-normalised).
        num_points: points per level.
        method: ``"default"`` (bilinear, zero padding, align_corners False) or ``"discrete"``.
    Returns:
        [B, Q, heads * head_dim].
    """
    if method not in METHODS:
        raise ValueError(f"cross-attention method must be one of {METHODS}, got {method!r}")
    bs, _, heads, head_dim = value.shape
    num_queries = sampling_locations.shape[1]
    split = [h * w for h, w in spatial_shapes]
    # [B*heads, head_dim, sum HW] per level
    value_list = value.permute(0, 2, 3, 1).flatten(0, 1).split(split, dim=-1)
    grids = 2 * sampling_locations - 1 if method == "default" else sampling_locations
    grids = grids.permute(0, 2, 1, 3, 4).flatten(0, 1)  # [B*heads, Q, P, 2]
    grid_list = grids.split(num_points, dim=-2)
    sampled = []
    for level, (h, w) in enumerate(spatial_shapes):
        value_l = value_list[level].reshape(bs * heads, head_dim, h, w)
        grid_l = grid_list[level]
        if method == "default":
            sampled.append(
                F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
            )
        else:
            sampled.append(_gather_nearest(value_l, grid_l, h, w))
    weights = attention_weights.permute(0, 2, 1, 3).reshape(bs * heads, 1, num_queries, sum(num_points))
    out = (torch.cat(sampled, dim=-1) * weights).sum(-1)  # [B*heads, head_dim, Q]
    return out.reshape(bs, heads * head_dim, num_queries).permute(0, 2, 1)


def _gather_nearest(value_l: Tensor, grid_l: Tensor, h: int, w: int) -> Tensor:
    """value_l [N, C, h, w], grid_l [N, Q, P, 2] in [0, 1] -> [N, C, Q, P] by pixel lookup.

    Pixel index = trunc(location * size + 0.5), clamped to the map, as upstream's ``*_dsp`` models
    were trained (half a pixel right of ``grid_sample``'s pixel-centre convention).
    """
    n, c = value_l.shape[:2]
    q, p = grid_l.shape[1:3]
    scale = torch.tensor([w, h], dtype=grid_l.dtype, device=grid_l.device)
    coord = (grid_l * scale + 0.5).to(torch.int64)
    x = coord[..., 0].clamp(0, w - 1).reshape(n, q * p)
    y = coord[..., 1].clamp(0, h - 1).reshape(n, q * p)
    flat = value_l.flatten(2)  # [N, C, h*w]
    index = (y * w + x).unsqueeze(1).expand(n, c, q * p)
    return flat.gather(2, index).reshape(n, c, q, p)


class MSDeformableAttention(nn.Module):
    """Deformable cross-attention over ``len(num_points)`` feature levels.

    Keys: ``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj`` and the buffer
    ``num_points_scale`` (1 / points of the point's level), as in the official checkpoints.
    """

    num_points_scale: Tensor

    def __init__(self, dim: int, heads: int, num_points: tuple[int, ...], *, method: str = "default") -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        if method not in METHODS:
            raise ValueError(f"cross-attention method must be one of {METHODS}, got {method!r}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.num_points = list(num_points)
        self.method = method
        total = sum(self.num_points)
        scale = [1.0 / n for n in self.num_points for _ in range(n)]
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32))
        self.sampling_offsets = nn.Linear(dim, heads * total * 2)
        self.attention_weights = nn.Linear(dim, heads * total)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()
        if method == "discrete":
            # Rounded sampling has no gradient w.r.t. the offsets, so they do not train.
            for p in self.sampling_offsets.parameters():
                p.requires_grad_(False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Offsets start on a ring of 8 directions scaled by point index; attention starts uniform."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.reshape(self.heads, 1, 2).tile(1, sum(self.num_points), 1)
        index = torch.cat([torch.arange(1, n + 1, dtype=torch.float32) for n in self.num_points])
        self.sampling_offsets.bias.copy_((grid * index.reshape(1, -1, 1)).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self, query: Tensor, reference_boxes: Tensor, value: Tensor, spatial_shapes: list[tuple[int, int]]
    ) -> Tensor:
        """query [B, Q, dim], reference_boxes [B, Q, 4] cxcywh in [0, 1], value [B, sum HW, dim] -> [B, Q, dim].

        A point's location is ``ref_xy + offset / points_of_its_level * ref_wh * 0.5``.
        """
        bs, nq = query.shape[:2]
        total = sum(self.num_points)
        value = self.value_proj(value).reshape(bs, value.shape[1], self.heads, self.head_dim)
        offsets = self.sampling_offsets(query).reshape(bs, nq, self.heads, total, 2)
        weights = self.attention_weights(query).reshape(bs, nq, self.heads, total).softmax(-1)
        ref = reference_boxes[:, :, None, None, :]
        scale = self.num_points_scale.to(query.dtype).unsqueeze(-1)
        locations = ref[..., :2] + offsets * scale * ref[..., 2:] * 0.5
        out = deformable_attention_core(
            value, spatial_shapes, locations, weights, self.num_points, method=self.method
        )
        return self.output_proj(out)
