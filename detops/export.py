"""ONNX export of a deployed detector, verified against PyTorch before the file appears.

The family decides the graph (``family.export_wrapper``: input/output names, post-processing inside or
not); this module traces it, checks the model with ``onnx.checker``, runs it with ONNX Runtime on fresh
random inputs and compares every output with PyTorch. Only then is the file moved into place.

An end-to-end graph (``postprocessor`` given: ``family.end2end_wrapper``) is traced with the model's
raw outputs as extra graph outputs. ONNX Runtime's raw outputs are held to PyTorch's as above, and its
final detections to the library's post-processing (``postprocessor``) of those same raw outputs, so
the check sees the graph's NMS / top-K alone, free of float noise from the network; then the raw
outputs are dropped from the file.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
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
    detections: dict[str, float] = field(default_factory=dict)
    """End-to-end graphs: ``end2end_differences`` of ONNX Runtime's detections against the library's
    post-processing of ONNX Runtime's raw outputs (empty for other graphs)."""


# The end-to-end check's tolerances: the graph and the library see the same raw outputs, so only the
# arithmetic of the post-processing may differ (box scaling in float32, score gathers).
E2E_BOX_ATOL_PX = 1e-3
E2E_SCORE_ATOL = 1e-5


def end2end_differences(
    got: dict[str, np.ndarray],
    reference: Sequence[Mapping[str, Any]],
    *,
    score_atol: float = E2E_SCORE_ATOL,
) -> dict[str, float]:
    """How far an end-to-end graph's detections are from per-image reference detections.

    Args:
        got: ``num_dets`` [B] (or [B, 1]), ``boxes`` [B, K, 4], ``scores`` [B, K], ``labels`` [B, K].
        reference: B dicts with ``boxes`` [n, 4], ``scores`` [n], ``labels`` [n] in the graph's box
            frame.
        score_atol: how close a twin's score must be.
    Returns:
        ``count_mismatches`` (images whose ``num_dets`` differs from n), ``unmatched`` (detections of
        images of equal count without a twin: same label, score within ``score_atol``), ``max_box_px``
        and ``max_score`` (largest absolute differences between twins).

    Each detection, best first, takes as twin the unused reference detection of its label within
    ``score_atol`` whose box is closest. Position-wise comparison would be wrong for near-ties: two
    detections whose scores are equal in one runtime may differ by 1e-8 in the other (sigmoid
    implementations), and ``TopK`` orders them differently (random-weight RT-DETRv2 has such ties).
    """
    nums = np.asarray(got["num_dets"]).reshape(-1)
    out = {"count_mismatches": 0.0, "unmatched": 0.0, "max_box_px": 0.0, "max_score": 0.0}
    for i, ref in enumerate(reference):
        ref_boxes = np.asarray(ref["boxes"], dtype=np.float64).reshape(-1, 4)
        ref_scores = np.asarray(ref["scores"], dtype=np.float64).reshape(-1)
        ref_labels = np.asarray(ref["labels"], dtype=np.int64).reshape(-1)
        n = int(nums[i])
        if n != ref_scores.shape[0]:
            out["count_mismatches"] += 1
            continue
        used = np.zeros(n, dtype=bool)
        boxes = np.asarray(got["boxes"][i, :n], dtype=np.float64)
        scores = np.asarray(got["scores"][i, :n], dtype=np.float64)
        labels = np.asarray(got["labels"][i, :n], dtype=np.int64)
        for j in range(n):
            score_diff = np.abs(ref_scores - scores[j])
            candidates = ~used & (ref_labels == labels[j]) & (score_diff <= score_atol)
            if not candidates.any():
                out["unmatched"] += 1
                continue
            box_diff = np.where(candidates, np.abs(ref_boxes - boxes[j]).max(axis=1), np.inf)
            twin = int(np.argmin(box_diff))
            used[twin] = True
            out["max_box_px"] = max(out["max_box_px"], float(box_diff[twin]))
            out["max_score"] = max(out["max_score"], float(score_diff[twin]))
    return out


def end2end_failures(
    diff: dict[str, float], *, box_atol: float = E2E_BOX_ATOL_PX, score_atol: float = E2E_SCORE_ATOL
) -> list[str]:
    """The entries of ``end2end_differences`` beyond tolerance, as ``name=value`` strings."""
    bad = [f"{k}={int(diff[k])}" for k in ("count_mismatches", "unmatched") if diff[k]]
    if diff["max_box_px"] > box_atol:
        bad.append(f"max_box_px={diff['max_box_px']:.2e}")
    if diff["max_score"] > score_atol:
        bad.append(f"max_score={diff['max_score']:.2e}")
    return bad


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


def drop_graph_outputs(path: Path, names: list[str]) -> None:
    """Remove the graph outputs ``names`` of the ONNX file at ``path`` (their producers stay where other
    outputs still need them). Their type and shape move to ``value_info``, so tools that cut the graph
    there (the TensorRT builder's EfficientNMS surgery) still know them."""
    import onnx

    model = onnx.load(str(path))
    kept = [o for o in model.graph.output if o.name not in names]
    model.graph.value_info.extend(o for o in model.graph.output if o.name in names)
    del model.graph.output[:]
    model.graph.output.extend(kept)
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
    postprocessor: nn.Module | None = None,
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
        postprocessor: the family's post-processor: export the end-to-end graph with its thresholds
            and K (``family.end2end_wrapper``); its detections must equal this post-processor's on
            ONNX Runtime's raw outputs (boxes within ``E2E_BOX_ATOL_PX``, scores within
            ``E2E_SCORE_ATOL``, same counts and labels). ``None``: the family's plain graph.
    Raises:
        DetopsError: parity or checker failure; nothing is written.
    """
    import onnx

    spec = models.get_variant(variant)
    size = image_size if image_size is not None else spec.input_size
    deployed = copy.deepcopy(model).eval()
    cast(Any, deployed).deploy()  # every family's detector has deploy(); nn.Module's typing cannot say so
    family = models.family_module(variant)
    if postprocessor is None:
        wrapper = family.export_wrapper(deployed).eval()
    else:
        wrapper = family.end2end_wrapper(deployed, postprocessor).eval()
    # Graph outputs that exist for the check only (raw outputs of an end-to-end graph).
    check_outputs: dict[str, str] = dict(getattr(wrapper, "check_outputs", {}))
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
        detections: dict[str, float] = {}
        if postprocessor is not None:
            named = dict(zip(wrapper.output_names, got, strict=True))
            raw = {key: torch.from_numpy(named[name]) for name, key in check_outputs.items()}
            count = check_inputs[0].shape[0]
            reference = postprocessor(
                raw, image_size=(size, size), orig_sizes=torch.tensor([[size, size]] * count)
            )
            detections = end2end_differences(named, reference, score_atol=E2E_SCORE_ATOL)
            failures = end2end_failures(detections)
            if failures:
                raise DetopsError(
                    f"{out}: the end-to-end graph's detections differ from the library's post-processing "
                    "of the same raw outputs: " + ", ".join(failures),
                    exit_code=1,
                )
            drop_graph_outputs(tmp, list(check_outputs))
            onnx.checker.check_model(str(tmp))
    final_outputs = [n for n in wrapper.output_names if n not in check_outputs]
    return ExportReport(
        path=out,
        opset=opset,
        input_names=list(wrapper.input_names),
        output_names=final_outputs,
        max_rel_error=errors,
        parity_outputs=gated,
        detections=detections,
    )
