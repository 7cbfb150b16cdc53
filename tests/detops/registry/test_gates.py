"""Promotion gates: each passing and failing, at the boundary, and on missing figures."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detops.registry.gates import GateResult, gate_accuracy_drop, gate_data_valid, gate_latency, gate_map

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
small = st.floats(min_value=0.0, max_value=0.5, allow_nan=False)


def test_gate_result_is_frozen() -> None:
    result = gate_latency(1.0, 2.0)
    assert isinstance(result, GateResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.passed = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("valid", "passed", "value"), [(True, True, 1.0), (False, False, 0.0), (None, False, None)]
)
def test_data_valid(valid: bool | None, passed: bool, value: float | None) -> None:
    result = gate_data_valid(valid)
    assert (result.name, result.passed, result.value) == ("data_valid", passed, value)


def test_map_no_champion_passes() -> None:
    result = gate_map(0.1, None, 0.0)
    assert result.passed and result.threshold is None and result.value == 0.1


def test_map_pass_fail_and_boundary() -> None:
    assert gate_map(0.40, 0.41, 0.02).passed  # within tolerance
    assert not gate_map(0.38, 0.41, 0.02).passed  # below champion - tol
    assert not gate_map(0.40, 0.41, 0.0).passed  # default tolerance 0: any drop fails
    at = gate_map(0.25, 0.5, 0.25)
    assert at.passed and at.threshold == pytest.approx(0.25)  # equality passes ("not below")
    assert gate_map(0.6, 0.5, 0.0).passed


@given(candidate=unit, champion=unit, tol=small)
def test_map_matches_definition(candidate: float, champion: float, tol: float) -> None:
    result = gate_map(candidate, champion, tol)
    assert result.passed == (candidate >= champion - tol)
    assert result.threshold == champion - tol


@pytest.mark.parametrize("candidate", [None, math.nan, math.inf])
def test_map_unmeasured_candidate_fails(candidate: float | None) -> None:
    assert not gate_map(candidate, None, 0.0).passed
    assert not gate_map(candidate, 0.1, 0.0).passed


def test_map_nan_champion_fails() -> None:
    assert not gate_map(0.5, math.nan, 0.0).passed


def test_accuracy_drop_pass_fail_and_sign() -> None:
    ok = gate_accuracy_drop(0.395, 0.40, 0.01)
    assert ok.passed and ok.value == pytest.approx(0.005) and ok.threshold == 0.01
    bad = gate_accuracy_drop(0.38, 0.40, 0.01)
    assert not bad.passed and bad.value == pytest.approx(0.02)
    better = gate_accuracy_drop(0.42, 0.40, 0.0)  # an artifact scoring higher is a negative drop
    assert better.passed and better.value == pytest.approx(-0.02)


@given(artifact=unit, checkpoint=unit, max_drop=small)
def test_accuracy_drop_matches_definition(artifact: float, checkpoint: float, max_drop: float) -> None:
    result = gate_accuracy_drop(artifact, checkpoint, max_drop)
    assert result.passed == (checkpoint - artifact <= max_drop)


@pytest.mark.parametrize(("artifact", "checkpoint"), [(None, 0.4), (0.4, None), (math.nan, 0.4)])
def test_accuracy_drop_unmeasured_fails(artifact: float | None, checkpoint: float | None) -> None:
    assert not gate_accuracy_drop(artifact, checkpoint, 1.0).passed


def test_latency_pass_fail_boundary_and_missing() -> None:
    assert gate_latency(9.9, 10.0).passed
    assert gate_latency(10.0, 10.0).passed
    over = gate_latency(10.1, 10.0)
    assert not over.passed and over.value == 10.1 and over.threshold == 10.0
    assert not gate_latency(None, 10.0).passed
    assert not gate_latency(math.nan, 10.0).passed


@pytest.mark.parametrize(
    "call",
    [
        lambda: gate_map(0.5, 0.5, -0.1),
        lambda: gate_accuracy_drop(0.5, 0.5, -0.01),
        lambda: gate_latency(1.0, 0.0),
        lambda: gate_latency(1.0, math.nan),
    ],
)
def test_bad_thresholds_raise(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


# Every branch's whole verdict: the registry writes name, value and threshold as tags and the
# detail into the audit record, so each is part of the result, not decoration.
VERDICTS = [
    (
        lambda: gate_data_valid(None),
        ("data_valid", False, None, 1.0, "no data validation record for this dataset version"),
    ),
    (lambda: gate_data_valid(True), ("data_valid", True, 1.0, 1.0, "data validation passed")),
    (lambda: gate_data_valid(False), ("data_valid", False, 0.0, 1.0, "data validation failed")),
    (
        lambda: gate_map(None, 0.3, 0.0),
        ("map", False, None, None, "candidate artifact mAP not measured (None)"),
    ),
    (lambda: gate_map(0.25, None, 0.0), ("map", True, 0.25, None, "no champion yet; candidate mAP 0.2500")),
    (lambda: gate_map(0.25, math.nan, 0.0), ("map", False, 0.25, None, "champion mAP is not a number (nan)")),
    (
        lambda: gate_map(0.25, 0.3, 0.1),
        (
            "map",
            True,
            0.25,
            0.3 - 0.1,
            "candidate mAP 0.2500 is not below champion 0.3000 - tolerance 0.1000 = 0.2000",
        ),
    ),
    (
        lambda: gate_map(0.25, 0.3, 0.0),
        (
            "map",
            False,
            0.25,
            0.3,
            "candidate mAP 0.2500 is below champion 0.3000 - tolerance 0.0000 = 0.3000",
        ),
    ),
    (
        lambda: gate_accuracy_drop(None, 0.3, 0.01),
        ("accuracy_drop", False, None, 0.01, "mAP not measured (artifact None, checkpoint 0.3)"),
    ),
    (
        lambda: gate_accuracy_drop(0.295, 0.3, 0.01),
        (
            "accuracy_drop",
            True,
            0.3 - 0.295,
            0.01,
            "artifact mAP 0.2950 vs checkpoint 0.3000: drop 0.0050 within 0.0100",
        ),
    ),
    (
        lambda: gate_accuracy_drop(0.25, 0.3, 0.01),
        (
            "accuracy_drop",
            False,
            0.3 - 0.25,
            0.01,
            "artifact mAP 0.2500 vs checkpoint 0.3000: drop 0.0500 exceeds 0.0100",
        ),
    ),
    (lambda: gate_latency(None, 20.0), ("latency", False, None, 20.0, "latency not measured (None)")),
    (
        lambda: gate_latency(12.5, 20.0),
        ("latency", True, 12.5, 20.0, "latency 12.50 ms within budget 20.00 ms"),
    ),
    (lambda: gate_latency(0.4, 0.5), ("latency", True, 0.4, 0.5, "latency 0.40 ms within budget 0.50 ms")),
    (
        lambda: gate_latency(25.0, 20.0),
        ("latency", False, 25.0, 20.0, "latency 25.00 ms over budget 20.00 ms"),
    ),
]


@pytest.mark.parametrize(("call", "expected"), VERDICTS)
def test_every_branch_gives_its_whole_verdict(call: Callable[[], GateResult], expected: tuple) -> None:
    # called here, not at collection: mutation testing maps each test to the functions it calls
    result = call()
    name, passed, value, threshold, detail = expected
    assert (result.name, result.passed, result.detail) == (name, passed, detail)
    assert result.value == pytest.approx(value) if value is not None else result.value is None
    assert result.threshold == pytest.approx(threshold) if threshold is not None else result.threshold is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gate_map(0.2, 0.3, -0.1), "map tolerance must be finite and >= 0, got -0.1"),
        (
            lambda: gate_accuracy_drop(0.2, 0.3, math.inf),
            "max accuracy drop must be finite and >= 0, got inf",
        ),
        (lambda: gate_latency(1.0, 0.0), "latency budget must be finite and > 0, got 0.0"),
    ],
)
def test_bad_thresholds_are_refused_with_their_value(call, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value) == message
