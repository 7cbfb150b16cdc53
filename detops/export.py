"""ONNX export of a deployed detector, verified against PyTorch before the file appears.

The family decides the graph (``family.export_wrapper``: input/output names, post-processing inside or
not); this module traces it, checks the model with ``onnx.checker``, runs it with ONNX Runtime on fresh
random inputs and compares every output with PyTorch. Only then is the file moved into place.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

import models
from detops.errors import DetopsError
from detops.fileio import atomic_path

DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    """Where the ONNX file went and how far ONNX Runtime was from PyTorch, per output."""

    path: Path
    opset: int
    input_names: list[str]
    output_names: list[str]
    max_rel_error: dict[str, float]
    parity_outputs: list[str] = field(default_factory=list)
    """The outputs the parity check held to its tolerance (the others may legitimately differ, e.g.
    boxes reordered among near-equal scores after a top-k)."""


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """max |actual - reference| / max |reference| (0 when both are all zero)."""
    ref = np.abs(reference.astype(np.float64)).max() if reference.size else 0.0
    diff = np.abs(actual.astype(np.float64) - reference.astype(np.float64)).max() if reference.size else 0.0
    return float(diff / ref) if ref > 0 else float(diff)


def _random_like(example: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if example.dtype.is_floating_point:
        # Same value range as the example (0-1 or 0-255), random content.
        scale = float(example.abs().max()) or 1.0
        return torch.rand(example.shape, generator=generator) * scale
    return example.clone()


def run_onnx(path: str | Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run an ONNX file with ONNX Runtime's CPU provider; returns outputs in graph order."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def set_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Add or replace ``metadata_props`` entries of the ONNX file at ``path``."""
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(metadata)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def export_onnx(
    variant: str,
    model: nn.Module,
    dst: str | Path,
    *,
    image_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    check_batch: int = 2,
    tolerance: float = 1e-4,
    seed: int = 0,
    batch: int | None = None,
    metadata: dict[str, str] | None = None,
) -> ExportReport:
    """Export a copy of ``model`` (deployed, eval mode) to ``dst`` and verify it.

    Args:
        variant: variant name, selects the family's export wrapper.
        model: the detector in train or deploy form; it is copied, not modified.
        dst: output ``.onnx`` path, written atomically (absent on any failure).
        image_size: square input size; default the variant's ``input_size``.
        opset: ONNX opset (17 or later).
        check_batch: batch size of the parity check; exported with batch 1 so that the check also
            proves the dynamic batch axis.
        batch: ``None`` for a dynamic batch axis; an int fixes the graph's batch (traced and checked at
            that size, so shapes fold to constants).
        metadata: ``metadata_props`` entries stored in the file before it is checked.
        tolerance: largest accepted relative error (see ``relative_error``) of each output the
            wrapper lists in ``parity_outputs`` (all outputs when it has no such attribute); the
            report carries the error of every output.
    Raises:
        DetopsError: parity or checker failure; nothing is written.
    """
    import onnx

    spec = models.get_variant(variant)
    size = image_size if image_size is not None else spec.input_size
    deployed = copy.deepcopy(model).eval()
    cast(Any, deployed).deploy()  # every family's detector has deploy(); nn.Module's typing cannot say so
    wrapper = models.family_module(variant).export_wrapper(deployed).eval()
    if batch is not None and batch < 1:
        raise DetopsError(f"--batch must be at least 1, got {batch}")
    trace_inputs = wrapper.example_inputs(batch or 1, size)
    generator = torch.Generator().manual_seed(seed)
    check_inputs = tuple(
        _random_like(x, generator) for x in wrapper.example_inputs(batch or check_batch, size)
    )

    out = Path(dst)
    with atomic_path(out) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is chosen on purpose (upstream-compatible graphs, opset 17); its
            # deprecation notice and tracer warnings about shape-derived Python values are expected.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                wrapper,
                trace_inputs,
                str(tmp),
                input_names=list(wrapper.input_names),
                output_names=list(wrapper.output_names),
                dynamic_axes=dict(wrapper.dynamic_axes) if batch is None else None,
                opset_version=opset,
                dynamo=False,
            )
            expected = wrapper(*check_inputs)
        if metadata:
            set_onnx_metadata(tmp, metadata)
        onnx.checker.check_model(str(tmp))
        got = run_onnx(tmp, {n: x.numpy() for n, x in zip(wrapper.input_names, check_inputs, strict=True)})
        errors = {
            name: relative_error(actual, ref.numpy())
            for name, actual, ref in zip(wrapper.output_names, got, expected, strict=True)
        }
        # Families whose graph ends in a top-k may name the outputs that decide parity: among
        # near-equal scores the order (so the boxes/labels at a position) can legitimately differ.
        gated = list(getattr(wrapper, "parity_outputs", wrapper.output_names))
        bad = {k: v for k, v in errors.items() if k in gated and v > tolerance}
        if bad:
            raise DetopsError(
                f"{out}: ONNX Runtime differs from PyTorch beyond {tolerance:g} relative: "
                + ", ".join(f"{k}={v:.2e}" for k, v in bad.items()),
                exit_code=1,
            )
    return ExportReport(
        path=out,
        opset=opset,
        input_names=list(wrapper.input_names),
        output_names=list(wrapper.output_names),
        max_rel_error=errors,
        parity_outputs=gated,
    )
