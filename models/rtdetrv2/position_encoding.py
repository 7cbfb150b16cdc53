"""Fixed 2D sine-cosine position embedding of the AIFI encoder layer."""

from __future__ import annotations

import torch
from torch import Tensor


def sincos_position_embedding_2d(
    width: int, height: int, *, embed_dim: int, temperature: float = 10000.0
) -> Tensor:
    """Position embedding for a ``height`` x ``width`` token grid -> [1, width * height, embed_dim].

    ``embed_dim / 4`` frequencies ``temperature ** (-k / (embed_dim / 4))``; channels are
    ``[sin(a w), cos(a w), sin(b w), cos(b w)]`` where ``a`` is the slow and ``b`` the fast index of
    a (width, height) grid. Replicates upstream exactly: the grid is (w, h) with "ij" indexing, so
    token ``t`` gets ``a = t // height`` and ``b = t % height`` while the feature tokens are
    flattened row-major; for square maps ``a`` is the row and ``b`` the column.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for the 2D sin-cos embedding, got {embed_dim}")
    grid_a, grid_b = torch.meshgrid(
        torch.arange(width, dtype=torch.float32), torch.arange(height, dtype=torch.float32), indexing="ij"
    )
    quarter = embed_dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    out_a = grid_a.flatten()[:, None] * omega[None]
    out_b = grid_b.flatten()[:, None] * omega[None]
    return torch.cat([out_a.sin(), out_a.cos(), out_b.sin(), out_b.cos()], dim=1)[None]
