"""Official RT-DETRv2 release checkpoints -> state dicts of this package's models (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

# Entries whose first dimension is the class count; re-initialised when fine-tuning to new classes.
CLASS_HEAD_PREFIXES = ("decoder.enc_score_head.", "decoder.dec_score_head.", "decoder.denoising_class_embed.")
_SHOWN = 8


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The weights inside a release / training file: ``ema.module``, else ``model``, else the dict itself.

    A ``module.`` prefix on every key (DistributedDataParallel) is removed.
    """
    ema = checkpoint.get("ema")
    if isinstance(ema, Mapping) and isinstance(ema.get("module"), Mapping):
        state = dict(ema["module"])
    elif isinstance(checkpoint.get("model"), Mapping):
        state = dict(checkpoint["model"])
    elif checkpoint and all(isinstance(v, Tensor) for v in checkpoint.values()):
        state = dict(checkpoint)
    else:
        raise ValueError(
            "checkpoint holds no state dict: expected ['ema']['module'], ['model'] or a bare state dict; "
            f"top-level keys: {sorted(map(str, checkpoint))[:_SHOWN]}"
        )
    non_tensor = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if non_tensor:
        raise ValueError(f"state dict entries that are not tensors: {non_tensor[:_SHOWN]}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def convert_state_dict(
    state: Mapping[str, Tensor],
    *,
    build: Callable[[], nn.Module],
    num_classes: int,
) -> dict[str, Tensor]:
    """Match an official state dict to the model ``build()`` makes (train form), strictly.

    * buffers the files may lack or hold for another size (``decoder.anchors``, ``decoder.valid_mask``,
      ``*.num_points_scale``, ``*.num_batches_tracked``) are taken from the fresh model when missing
      or shaped differently; ``num_batches_tracked`` entries the model has no slot for (frozen BN)
      are dropped;
    * when the file's class count (rows of ``decoder.enc_score_head.weight``) differs from
      ``num_classes``, the class heads (``enc_score_head``, ``dec_score_head.*``,
      ``denoising_class_embed``) keep the fresh model's initialisation;
    * floating tensors are cast to the model's dtype;
    * anything else missing, unexpected or shape-mismatched raises ``ValueError`` naming the keys.

    Returns the state dict in the model's key order.
    """
    with torch.device("meta"):
        expected = build().state_dict()
    file_classes = state.get("decoder.enc_score_head.weight")
    fine_tune = file_classes is not None and int(file_classes.shape[0]) != num_classes
    derivable = ("decoder.anchors", "decoder.valid_mask", ".num_points_scale", ".num_batches_tracked")

    def is_derivable(key: str) -> bool:
        return key.endswith(derivable) or key in derivable

    def is_class_head(key: str) -> bool:
        return fine_tune and key.startswith(CLASS_HEAD_PREFIXES)

    unexpected = [k for k in state if k not in expected and not k.endswith(".num_batches_tracked")]
    missing = [k for k in expected if k not in state and not is_derivable(k) and not is_class_head(k)]
    mismatched = [
        f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state
        and tuple(state[k].shape) != tuple(expected[k].shape)
        and not is_derivable(k)
        and not is_class_head(k)
    ]
    if unexpected or missing or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:_SHOWN])}{more}")
        raise ValueError("checkpoint does not fit the model: " + "; ".join(parts))

    needs_fresh = [
        k
        for k in expected
        if k not in state or tuple(state[k].shape) != tuple(expected[k].shape) or is_class_head(k)
    ]
    fresh = build().state_dict() if needs_fresh else {}
    out: dict[str, Tensor] = {}
    for key, ref in expected.items():
        if key in needs_fresh:
            out[key] = fresh[key].clone()
            continue
        value = state[key]
        out[key] = value.to(ref.dtype) if value.dtype != ref.dtype else value
    return out
