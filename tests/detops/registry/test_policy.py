"""Promotion policy files: defaults in code, TOML and YAML, unknown keys and bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from detops.errors import DetopsError
from detops.registry.policy import Candidate, Policy, load_policy, policy_from_dict


def test_defaults_without_a_file() -> None:
    assert load_policy(None) == Policy()
    assert Policy().map_tolerance == 0.0 and Policy().backend == "ort"


def test_toml_and_yaml_override_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('map_tolerance = 0.02\nbackend = "openvino"\nlatency_budget_ms = 25\n')
    yml = tmp_path / "p.yaml"
    yml.write_text("map_tolerance: 0.02\nbackend: openvino\nlatency_budget_ms: 25\n")
    for path in (toml, yml):
        policy = load_policy(path)
        assert (policy.map_tolerance, policy.backend, policy.latency_budget_ms) == (0.02, "openvino", 25)
        assert policy.max_accuracy_drop == Policy().max_accuracy_drop  # untouched default


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("map_tolerence = 0.1\n")
    with pytest.raises(DetopsError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message and "'map_tolerence'" in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("map_tolerance = -0.1\n", "map_tolerance"),
        ('max_accuracy_drop = "x"\n', "max_accuracy_drop"),
        ("latency_budget_ms = 0\n", "latency_budget_ms"),
        ('backend = "tflite"\n', "backend"),
        ('require_data_validation = "yes"\n', "require_data_validation"),
        ("latency_budget_ms = true\n", "latency_budget_ms"),
    ],
)
def test_bad_values_name_file_key_and_value(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(DetopsError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field {key!r}") and "got" in message


@pytest.mark.parametrize(("name", "text"), [("p.toml", "a = = 1\n"), ("p.yaml", "a: [\n"), ("p.json", "{}")])
def test_unreadable_files(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DetopsError, match=str(path)):
        load_policy(path)
    with pytest.raises(DetopsError, match="not found"):
        load_policy(tmp_path / "missing.toml")


def test_evaluate_runs_every_gate_with_policy_thresholds() -> None:
    policy = policy_from_dict({"map_tolerance": 0.05, "max_accuracy_drop": 0.01, "latency_budget_ms": 10})
    good = Candidate(data_valid=True, artifact_map=0.30, checkpoint_map=0.305, latency_ms=9.0)
    results = policy.evaluate(good, champion_map=0.34)
    assert [r.name for r in results] == ["data_valid", "map", "accuracy_drop", "latency"]
    assert all(r.passed for r in results)
    assert results[1].threshold == pytest.approx(0.29) and results[3].threshold == 10
    bad = Candidate(data_valid=False, artifact_map=0.20, checkpoint_map=0.30, latency_ms=11.0)
    assert [r.passed for r in policy.evaluate(bad, champion_map=0.34)] == [False, False, False, False]
    # each gate gets its own threshold: a drop of 0.03 is within the map tolerance but not max_accuracy_drop
    lossy = Candidate(data_valid=True, artifact_map=0.33, checkpoint_map=0.36, latency_ms=1.0)
    assert [r.passed for r in policy.evaluate(lossy, champion_map=0.34)] == [True, True, False, True]


def test_data_validation_can_be_waived() -> None:
    candidate = Candidate(data_valid=None, artifact_map=0.3, checkpoint_map=0.3, latency_ms=1.0)
    assert not Policy().evaluate(candidate, champion_map=None)[0].passed
    waived = Policy(require_data_validation=False).evaluate(candidate, champion_map=None)
    assert waived[0].passed and "not required" in waived[0].detail
