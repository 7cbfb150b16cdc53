"""Promotion gates: pure functions over plain values, each returning a frozen :class:`GateResult`.

No gate reads files, talks to MLflow or knows about a policy; :mod:`detops.registry.promote` feeds
them the figures it collected and a policy's thresholds. A missing or non-finite figure never passes
(except where a missing champion means "nothing to beat"), so an unmeasured model cannot ship.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate.

    ``value`` is the figure the gate judged (``None`` when it was missing), ``threshold`` the bound it
    was held to (``None`` when there was none), ``detail`` one human-readable line saying why.
    """

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def gate_data_valid(valid: bool | None) -> GateResult:
    """Pass only when data validation ran on the candidate's dataset version and passed.

    ``valid`` is ``True``/``False`` for a validation that ran, ``None`` when no record exists (fails).
    ``value`` is 1.0 / 0.0 / ``None``.
    """
    if valid is None:
        return GateResult(
            "data_valid", False, None, 1.0, "no data validation record for this dataset version"
        )
    if valid:
        return GateResult("data_valid", True, 1.0, 1.0, "data validation passed")
    return GateResult("data_valid", False, 0.0, 1.0, "data validation failed")


def gate_map(candidate: float | None, champion: float | None, tol: float) -> GateResult:
    """Pass when the candidate's deployed-artifact mAP is not below the champion's minus ``tol``.

    ``candidate``/``champion``: mAP 50:95 in [0, 1] of the artifacts that would ship. With no
    champion (``None``) any finite candidate passes. ``threshold`` is ``champion - tol``.
    """
    if tol < 0 or not math.isfinite(tol):
        raise ValueError(f"map tolerance must be finite and >= 0, got {tol}")
    if not _finite(candidate):
        return GateResult("map", False, None, None, f"candidate artifact mAP not measured ({candidate})")
    assert candidate is not None
    if champion is None:
        return GateResult("map", True, candidate, None, f"no champion yet; candidate mAP {candidate:.4f}")
    if not math.isfinite(champion):
        return GateResult("map", False, candidate, None, f"champion mAP is not a number ({champion})")
    threshold = champion - tol
    passed = candidate >= threshold
    verb = "is not below" if passed else "is below"
    return GateResult(
        "map",
        passed,
        candidate,
        threshold,
        f"candidate mAP {candidate:.4f} {verb} champion {champion:.4f} - tolerance {tol:.4f} = {threshold:.4f}",
    )


def gate_accuracy_drop(
    artifact_map: float | None, checkpoint_map: float | None, max_drop: float
) -> GateResult:
    """Pass when the artifact loses at most ``max_drop`` mAP against the checkpoint it came from.

    ``value`` is the drop ``checkpoint_map - artifact_map`` (negative when the artifact scores
    higher); ``threshold`` is ``max_drop``. Both mAPs must be finite.
    """
    if max_drop < 0 or not math.isfinite(max_drop):
        raise ValueError(f"max accuracy drop must be finite and >= 0, got {max_drop}")
    if not (_finite(artifact_map) and _finite(checkpoint_map)):
        return GateResult(
            "accuracy_drop",
            False,
            None,
            max_drop,
            f"mAP not measured (artifact {artifact_map}, checkpoint {checkpoint_map})",
        )
    assert artifact_map is not None and checkpoint_map is not None
    drop = checkpoint_map - artifact_map
    passed = drop <= max_drop
    verb = "within" if passed else "exceeds"
    return GateResult(
        "accuracy_drop",
        passed,
        drop,
        max_drop,
        f"artifact mAP {artifact_map:.4f} vs checkpoint {checkpoint_map:.4f}: drop {drop:.4f} {verb} {max_drop:.4f}",
    )


def gate_latency(latency_ms: float | None, budget_ms: float) -> GateResult:
    """Pass when the measured latency (ms, e.g. the profile's median) is within ``budget_ms``.

    A missing or non-finite latency fails: an artifact that was never profiled on the target
    backend cannot be held to a budget.
    """
    if budget_ms <= 0 or not math.isfinite(budget_ms):
        raise ValueError(f"latency budget must be finite and > 0, got {budget_ms}")
    if not _finite(latency_ms):
        return GateResult("latency", False, None, budget_ms, f"latency not measured ({latency_ms})")
    assert latency_ms is not None
    passed = latency_ms <= budget_ms
    verb = "within" if passed else "over"
    return GateResult(
        "latency",
        passed,
        latency_ms,
        budget_ms,
        f"latency {latency_ms:.2f} ms {verb} budget {budget_ms:.2f} ms",
    )
