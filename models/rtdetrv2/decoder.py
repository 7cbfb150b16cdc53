"""RT-DETRv2 transformer decoder: query selection, deformable decoder layers, box refinement, denoising.

Module names match the official checkpoint keys under ``decoder.``: ``input_proj``, ``decoder.layers``,
``denoising_class_embed``, ``query_pos_head``, ``enc_output``, ``enc_score_head``, ``enc_bbox_head``,
``dec_score_head``, ``dec_bbox_head`` and the buffers ``anchors`` / ``valid_mask`` (cached for the
eval size).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.rtdetrv2.deformable_attention import MSDeformableAttention
from models.rtdetrv2.denoising import contrastive_denoising_group
from models.rtdetrv2.layers import MLP, bias_init_with_prob, inverse_sigmoid


def generate_anchors(
    spatial_shapes: list[tuple[int, int]],
    *,
    grid_size: float = 0.05,
    eps: float = 0.01,
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Anchor boxes for every token of every level, in logit space.

    Token (x, y) of level ``l`` (H_l x W_l) gets centre ((x + .5) / W_l, (y + .5) / H_l) and size
    ``grid_size * 2**l``. An anchor is valid iff all four values lie in (eps, 1 - eps).
    Returns (anchors [1, sum HW, 4] inverse-sigmoid, +inf where invalid; valid_mask bool [1, sum HW, 1]).
    """
    parts = []
    for level, (h, w) in enumerate(spatial_shapes):
        gy, gx = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=device),
            torch.arange(w, dtype=torch.float32, device=device),
            indexing="ij",
        )
        xy = (torch.stack([gx, gy], -1) + 0.5) / torch.tensor([w, h], dtype=torch.float32, device=device)
        wh = torch.full_like(xy, grid_size * 2.0**level)
        parts.append(torch.cat([xy, wh], -1).reshape(1, h * w, 4))
    anchors = torch.cat(parts, 1)
    valid = ((anchors > eps) & (anchors < 1 - eps)).all(-1, keepdim=True)
    anchors = torch.log(anchors / (1 - anchors))
    return torch.where(valid, anchors, torch.full_like(anchors, float("inf"))), valid


class DecoderLayer(nn.Module):
    """Post-norm: self-attention -> LN -> deformable cross-attention -> LN -> FFN (ReLU) -> LN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, num_points: tuple[int, ...], method: str) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformableAttention(dim, heads, num_points, method=method)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self,
        target: Tensor,
        ref_boxes: Tensor,
        memory: Tensor,
        spatial_shapes: list[tuple[int, int]],
        attn_mask: Tensor | None,
        query_pos: Tensor,
    ) -> Tensor:
        """target [B, Q, dim], ref_boxes [B, Q, 4] (sigmoid cxcywh), memory [B, sum HW, dim] -> [B, Q, dim]."""
        q = target + query_pos
        # need_weights=False as upstream: the fused attention kernel (and upstream's FLOP count).
        attn = self.self_attn(q, q, value=target, attn_mask=attn_mask, need_weights=False)[0]
        target = self.norm1(target + attn)
        target = self.norm2(target + self.cross_attn(target + query_pos, ref_boxes, memory, spatial_shapes))
        return self.norm3(target + self.linear2(F.relu(self.linear1(target))))


class TransformerDecoder(nn.Module):
    """The stack of decoder layers (keys ``layers.{i}``); the heads live in the parent module."""

    def __init__(self, layers: list[DecoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class RTDETRDecoder(nn.Module):
    """Everything after the hybrid encoder (upstream ``RTDETRTransformerv2``).

    Args:
        in_channels: widths of the 3 encoder maps; num_classes: classes.
        dim / heads / ffn_dim / num_layers: decoder transformer sizes.
        eval_idx: last layer run at inference (-1 = all); num_queries: top-k proposals kept.
        num_points: sampling points per level; method: ``"default"`` or ``"discrete"``.
        num_denoising / label_noise_ratio / box_noise_scale: contrastive denoising settings.
        eval_spatial_size: input size whose anchors are cached as buffers.
    """

    anchors: Tensor
    valid_mask: Tensor

    def __init__(
        self,
        *,
        in_channels: list[int],
        num_classes: int,
        dim: int,
        heads: int,
        ffn_dim: int,
        num_layers: int,
        eval_idx: int,
        num_queries: int,
        num_points: tuple[int, ...],
        method: str,
        num_denoising: int,
        label_noise_ratio: float,
        box_noise_scale: float,
        eval_spatial_size: int,
        strides: tuple[int, ...] = (8, 16, 32),
    ) -> None:
        super().__init__()
        if len(num_points) != len(in_channels):
            raise ValueError(f"num_points {num_points} must have one entry per level ({len(in_channels)})")
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_layers = num_layers
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        if not 0 <= self.eval_idx < num_layers:
            raise ValueError(f"eval_idx {eval_idx} out of range for {num_layers} decoder layers")
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        shapes = [(eval_spatial_size // s, eval_spatial_size // s) for s in strides]
        anchors, valid = generate_anchors(shapes)
        self.register_buffer("anchors", anchors)
        self.register_buffer("valid_mask", valid)

        self.input_proj = nn.ModuleList(
            nn.Sequential(
                OrderedDict([("conv", nn.Conv2d(c, dim, 1, bias=False)), ("norm", nn.BatchNorm2d(dim))])
            )
            for c in in_channels
        )
        self.decoder = TransformerDecoder(
            [DecoderLayer(dim, heads, ffn_dim, num_points, method) for _ in range(num_layers)]
        )
        self.denoising_class_embed = nn.Embedding(num_classes + 1, dim, padding_idx=num_classes)
        self.query_pos_head = MLP(4, 2 * dim, dim, 2)
        self.enc_output = nn.Sequential(
            OrderedDict([("proj", nn.Linear(dim, dim)), ("norm", nn.LayerNorm(dim))])
        )
        self.enc_score_head = nn.Linear(dim, num_classes)
        self.enc_bbox_head = MLP(dim, dim, 4, 3)
        self.dec_score_head = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(num_layers))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Class priors 0.01, zero last box layers (start at the anchor), xavier for projections."""
        prior = bias_init_with_prob(0.01)
        for cls in [self.enc_score_head, *self.dec_score_head]:
            nn.init.constant_(cast(nn.Linear, cls).bias, prior)
        for head in [self.enc_bbox_head, *self.dec_bbox_head]:
            last = cast(nn.Linear, cast(MLP, head).layers[-1])
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        nn.init.xavier_uniform_(cast(nn.Linear, self.enc_output.proj).weight)
        for layer in self.query_pos_head.layers:
            nn.init.xavier_uniform_(cast(nn.Linear, layer).weight)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(cast(nn.Conv2d, proj.conv).weight)

    def forward(self, feats: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> dict[str, Any]:
        """Encoder maps -> raw outputs (same keys in train and eval).

        Args:
            feats: 3 maps [B, C_l, H_l, W_l].
            targets: per image ``"labels"`` [N] and ``"boxes"`` [N, 4] normalised cxcywh; read only in
                training, for denoising.
        Returns:
            ``pred_logits`` [B, Q, C], ``pred_boxes`` [B, Q, 4] (sigmoid cxcywh) of the last layer run;
            ``aux_outputs`` (earlier layers, training only, else ``[]``); ``enc_outputs`` (one dict with
            the encoder's top-Q proposals); ``dn_outputs`` (one dict per layer with the denoising
            queries, ``[]`` without denoising) and ``dn_meta`` (``{}`` without denoising, else
            ``positive_idx``, ``num_groups``, ``num_split``).
        """
        memory, shapes = self._flatten_levels(feats)
        dn = None
        if self.training and targets is not None and self.num_denoising > 0:
            dn = contrastive_denoising_group(
                [t["labels"] for t in targets],
                [t["boxes"] for t in targets],
                num_classes=self.num_classes,
                num_queries=self.num_queries,
                num_denoising=self.num_denoising,
                label_noise_ratio=self.label_noise_ratio,
                box_noise_scale=self.box_noise_scale,
            )
        content, ref_logits, enc_logits, enc_boxes = self._select_queries(memory, shapes)
        attn_mask = None
        if dn is not None:
            content = torch.cat([self.denoising_class_embed(dn.labels), content], 1)
            ref_logits = torch.cat([dn.box_logits.to(ref_logits.dtype), ref_logits], 1)
            attn_mask = dn.attn_mask
        boxes, logits = self._run_layers(content, ref_logits, memory, shapes, attn_mask)

        num_dn = dn.num_denoising if dn is not None else 0
        dn_boxes, boxes = boxes[:, :, :num_dn], boxes[:, :, num_dn:]
        dn_logits, logits = logits[:, :, :num_dn], logits[:, :, num_dn:]
        out: dict[str, Any] = {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "aux_outputs": [
                {"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1], strict=True)
            ],
            "enc_outputs": [{"pred_logits": enc_logits, "pred_boxes": enc_boxes}],
            "dn_outputs": [],
            "dn_meta": {},
        }
        if dn is not None:
            out["dn_outputs"] = [
                {"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(dn_logits, dn_boxes, strict=True)
            ]
            out["dn_meta"] = {
                "positive_idx": dn.positive_idx,
                "num_groups": dn.num_groups,
                "num_split": [dn.num_denoising, self.num_queries],
            }
        return out

    def _flatten_levels(self, feats: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        flat, shapes = [], []
        for proj, f in zip(self.input_proj, feats, strict=True):
            x = proj(f)
            shapes.append((int(x.shape[2]), int(x.shape[3])))
            flat.append(x.flatten(2).permute(0, 2, 1))
        return torch.cat(flat, 1), shapes

    def _select_queries(
        self, memory: Tensor, shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Top-Q encoder tokens by max class logit -> (content, ref box logits, their logits, boxes)."""
        if memory.shape[1] < self.num_queries:
            raise ValueError(
                f"input too small: {memory.shape[1]} encoder tokens for {self.num_queries} queries "
                f"(feature maps {shapes}); use a larger image size"
            )
        if self.training or self.anchors.shape[1] != memory.shape[1]:
            anchors, valid = generate_anchors(shapes, device=memory.device)
        else:
            anchors, valid = self.anchors, self.valid_mask
        memory = valid.to(memory.dtype) * memory
        enc_memory = self.enc_output(memory)
        enc_logits = self.enc_score_head(enc_memory)
        enc_box_logits = self.enc_bbox_head(enc_memory) + anchors.to(memory.dtype)
        topk = torch.topk(enc_logits.max(-1).values, self.num_queries, dim=1).indices  # [B, Q]
        top_memory = enc_memory.gather(1, topk.unsqueeze(-1).expand(-1, -1, enc_memory.shape[-1]))
        top_logits = enc_logits.gather(1, topk.unsqueeze(-1).expand(-1, -1, enc_logits.shape[-1]))
        top_box_logits = enc_box_logits.gather(1, topk.unsqueeze(-1).expand(-1, -1, 4))
        # The decoder starts from the proposals but does not back-propagate into the selection.
        return top_memory.detach(), top_box_logits.detach(), top_logits, top_box_logits.sigmoid()

    def _run_layers(
        self,
        target: Tensor,
        ref_logits: Tensor,
        memory: Tensor,
        shapes: list[tuple[int, int]],
        attn_mask: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Iterative refinement -> (boxes [L, B, Q', 4], logits [L, B, Q', C]) for the layers returned."""
        boxes, logits = [], []
        ref = ref_logits.sigmoid()
        ref_detached = ref
        for i, layer in enumerate(self.decoder.layers):
            target = layer(target, ref_detached, memory, shapes, attn_mask, self.query_pos_head(ref_detached))
            delta = self.dec_bbox_head[i](target)
            new_ref = torch.sigmoid(delta + inverse_sigmoid(ref_detached))
            if self.training:
                logits.append(self.dec_score_head[i](target))
                # "Look forward twice": the loss box of layer i > 0 keeps the gradient to layer i - 1.
                boxes.append(new_ref if i == 0 else torch.sigmoid(delta + inverse_sigmoid(ref)))
            elif i == self.eval_idx:
                logits.append(self.dec_score_head[i](target))
                boxes.append(new_ref)
                break
            ref = new_ref
            ref_detached = new_ref.detach()
        return torch.stack(boxes), torch.stack(logits)
