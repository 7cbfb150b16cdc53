"""The accuracy gate of a low-precision artifact against the checkpoint it came from.

``accuracy_gate`` reads the two mAP 50:95 figures of an ``evaluate_artifact(..., reference=...)``
result and hands them to the registry's pure ``gate_accuracy_drop``; `detops evaluate --max-drop` and
the registry's promotion use the same verdict.
"""

from __future__ import annotations

from typing import Any

from detops.errors import DetopsError
from detops.registry.gates import GateResult, gate_accuracy_drop


def accuracy_gate(stats: dict[str, Any], *, max_drop: float) -> GateResult:
    """Verdict on ``stats`` (with ``AP`` and ``reference.AP``, mAP 50:95): pass when the artifact's mAP 50:95 is
    at most ``max_drop`` below the reference checkpoint's on the same images."""
    if "reference" not in stats:
        raise DetopsError("--max-drop needs --reference CHECKPOINT to compare against")
    return gate_accuracy_drop(float(stats["AP"]), float(stats["reference"]["AP"]), max_drop)
