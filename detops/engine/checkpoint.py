"""Training checkpoints: atomic writes, validated reads, and the RNG state that makes resume exact.

A checkpoint is a ``torch.save``'d dict (readable with ``weights_only=True``)::

    {"format": "detops.checkpoint/1", "variant", "num_classes", "class_names", "category_ids",
     "epoch" (last finished, 0-based), "model" (raw weights), "ema" (ModelEMA state or None),
     "optimizer", "scheduler", "scaler", "rng", "best_map", "config" (resolved TrainConfig dict)}

``model_weights(ckpt)`` picks the weights to evaluate or export: the EMA ones when present.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detops.errors import DetopsError
from detops.fileio import atomic_path
from detops.weights import compare_state_dicts, load_checkpoint_file

CHECKPOINT_FORMAT = "detops.checkpoint/1"


def capture_rng() -> dict[str, Any]:
    """The torch / numpy / python RNG states as tensors and plain lists (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng``."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (see the module docstring; ``format`` is added) to ``path`` atomically.

    ``path`` holds the previous checkpoint until the new one is complete and fsynced; a failure or
    a killed process mid-write never leaves a partial file at ``path``. A process killed mid-write
    cannot remove its hidden temporary (``.NAME.*.tmp`` beside ``path``); the next save does."""
    target = Path(path)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    with atomic_path(target) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)


def read_checkpoint(path: str | Path, *, variant: str | None = None) -> dict[str, Any]:
    """Load a detops checkpoint or weight file; one-line ``DetopsError`` for a missing or corrupt file,
    an unknown format, or (``variant`` given) a file made for another variant."""
    src = Path(path)
    obj = load_checkpoint_file(src)
    if "model" not in obj or "variant" not in obj:
        raise DetopsError(
            f"checkpoint {src}: not a detops checkpoint or weight file (no 'variant'/'model' fields)"
        )
    if variant is not None and obj["variant"] != variant:
        raise DetopsError(f"checkpoint {src}: field 'variant' is {obj['variant']!r}, expected {variant!r}")
    return obj


def model_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict to evaluate: EMA weights when the checkpoint has them, else the raw model."""
    ema = ckpt.get("ema")
    if isinstance(ema, dict) and "module" in ema:
        return ema["module"]
    return ckpt["model"]


def load_matching(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load every entry of ``state_dict`` whose name and shape match ``model``; return the model keys
    left at their fresh initialisation (class heads when the class count differs).

    Raises ``DetopsError`` when keys are missing or unexpected for another reason than shape, which
    means the file belongs to a different architecture."""
    own = model.state_dict()
    missing, unexpected, reshaped = compare_state_dicts(own, state_dict)
    if missing or unexpected:
        raise DetopsError(
            f"weights do not fit this model: {len(missing)} missing key(s) (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    kept = {k: v for k, v in state_dict.items() if k not in reshaped}
    model.load_state_dict({**own, **kept}, strict=True)
    return sorted(reshaped)
