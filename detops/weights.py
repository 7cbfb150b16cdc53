"""Import official release checkpoints into detops weight files, and read those files back.

A detops weight file is a ``torch.save``'d dict::

    {"format": "detops.weights/1", "variant": str, "num_classes": int,
     "model": state_dict (train form), "source": str, "source_sha256": str,
     "reinitialised": [keys re-initialised because the class count changed],
     "class_names": [...], "category_ids": [...]}   # COCO's 80, when the class heads were kept

Everything is loaded with ``weights_only=True``: a checkpoint never executes code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import models
from detops.errors import DetopsError
from detops.fileio import atomic_path, sha256_file

WEIGHTS_FORMAT = "detops.weights/1"


@dataclass(frozen=True)
class ImportReport:
    """What ``import_official`` did: tensors read and written, and class-head keys re-initialised."""

    variant: str
    num_classes: int
    source_tensors: int
    model_tensors: int
    reinitialised: list[str] = field(default_factory=list)


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors for missing, corrupt or odd files."""
    src = Path(path)
    if not src.is_file():
        raise DetopsError(f"{src}: checkpoint file not found")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip errors, unpickling refusals, truncated files all land here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DetopsError(f"{src}: corrupt or not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(obj, dict):
        raise DetopsError(f"{src}: expected a dict at the top level, found {type(obj).__name__}")
    return obj


def _count_tensors(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return 1
    if isinstance(obj, dict):
        return sum(_count_tensors(v) for v in obj.values())
    return 0


def _largest_tensor_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The nested dict holding the most tensors (the state dict inside a release file)."""
    best: dict[str, torch.Tensor] = {}
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if len(tensors) > len(best):
            best = tensors
        for value in obj.values():
            inner = _largest_tensor_dict(value)
            if len(inner) > len(best):
                best = inner
    return best


def compare_state_dicts(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Keys of ``expected`` absent from ``given``, keys of ``given`` absent from ``expected``, and
    keys in both whose shapes differ: ``(missing, unexpected, reshaped)``, each in dict order."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [k for k, v in given.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    return missing, unexpected, reshaped


def _state_dict_mismatches(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    expected = model.state_dict()
    missing, unexpected, reshaped = compare_state_dicts(expected, state_dict)
    return (
        [f"missing: {k} {tuple(expected[k].shape)}" for k in missing]
        + [f"unexpected: {k} {tuple(state_dict[k].shape)}" for k in unexpected]
        + [
            f"shape: {k} checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
            for k in reshaped
        ]
    )


def import_official(
    variant: str,
    src: str | Path,
    dst: str | Path,
    *,
    num_classes: int = 80,
    source_sha256: str | None = None,
) -> ImportReport:
    """Map an official release file of ``variant`` onto this implementation and save a weight file.

    Strict: every parameter and buffer of the model must be filled and every source tensor used (the
    family's converter rejects leftovers); otherwise ``DetopsError`` lists the mismatches and nothing
    is written. ``num_classes`` different from the checkpoint's re-initialises the class heads only.
    ``source_sha256``: the source file's sha256 when the caller has computed it (else computed here).
    """
    try:
        spec = models.get_variant(variant)
    except ValueError as exc:
        raise DetopsError(str(exc)) from None
    src_path = Path(src)
    checkpoint = load_checkpoint_file(src_path)
    family = models.family_module(variant)
    try:
        with warnings.catch_warnings():
            # Re-initialised class heads are reported in the ImportReport (and by the CLI) instead.
            warnings.simplefilter("ignore", UserWarning)
            state_dict = family.convert_official_checkpoint(spec, checkpoint, num_classes=num_classes)
    except ValueError as exc:
        raise DetopsError(f"{src_path}: does not match {variant}: {exc}") from None
    model = models.build_model(variant, num_classes=num_classes)
    problems = _state_dict_mismatches(model, state_dict)
    if problems:
        shown = "; ".join(problems[:20]) + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DetopsError(f"{src_path}: {len(problems)} mismatches against {variant}: {shown}")
    model.load_state_dict(state_dict, strict=True)
    source = _largest_tensor_dict(checkpoint)
    # Keys whose shape changed are the class heads the converter re-initialised for a new class count.
    reinitialised = sorted(
        k for k, v in state_dict.items() if k in source and tuple(source[k].shape) != tuple(v.shape)
    )
    payload = {
        "format": WEIGHTS_FORMAT,
        "variant": variant,
        "num_classes": num_classes,
        "model": model.state_dict(),
        "source": src_path.name,
        "source_sha256": source_sha256 or sha256_file(src_path),
        "reinitialised": reinitialised,
    }
    if num_classes == 80:
        # the release's own classes: its artifacts are scored on COCO's category ids, not 1..80
        from detops.data.coco_classes import COCO_IDS, COCO_NAMES

        payload["class_names"], payload["category_ids"] = list(COCO_NAMES), list(COCO_IDS)
    with atomic_path(dst) as tmp:
        torch.save(payload, tmp)
    return ImportReport(
        variant=variant,
        num_classes=num_classes,
        source_tensors=_count_tensors(checkpoint),
        model_tensors=len(state_dict),
        reinitialised=reinitialised,
    )


def load_weights(path: str | Path, *, variant: str | None = None) -> dict[str, Any]:
    """Read a detops weight file; ``variant`` given, refuse a file made for another variant."""
    obj = load_checkpoint_file(path)
    if obj.get("format") != WEIGHTS_FORMAT or "model" not in obj:
        raise DetopsError(f"{path}: not a detops weight file (field 'format' is {obj.get('format')!r})")
    if variant is not None and obj.get("variant") != variant:
        raise DetopsError(f"{path}: weights are for variant {obj.get('variant')!r}, not {variant!r}")
    return obj
