"""Promotion policy files: defaults in code, TOML and YAML, unknown keys and bad values refused."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

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


# Every refusal's whole line: it is what a user reads, and it names the file, the key and the value.
KEYS = "map_tolerance, max_accuracy_drop, latency_budget_ms, backend, require_data_validation"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["x"], "p.toml: expected a table of policy keys, got list"),
        ({"speed": 1}, f"p.toml: unknown policy key 'speed'; valid keys: {KEYS}"),
        ({"map_tolerance": -0.1}, "p.toml: field 'map_tolerance': expected a finite number >= 0, got -0.1"),
        (
            {"max_accuracy_drop": True},
            "p.toml: field 'max_accuracy_drop': expected a finite number >= 0, got True",
        ),
        ({"latency_budget_ms": 0}, "p.toml: field 'latency_budget_ms': expected a finite number > 0, got 0"),
        (
            {"latency_budget_ms": "fast"},
            "p.toml: field 'latency_budget_ms': expected a finite number > 0, got 'fast'",
        ),
        (
            {"latency_budget_ms": math.inf},
            "p.toml: field 'latency_budget_ms': expected a finite number > 0, got inf",
        ),
        ({"backend": "tpu"}, "p.toml: field 'backend': expected one of ort, openvino, tensorrt, got 'tpu'"),
        (
            {"require_data_validation": "yes"},
            "p.toml: field 'require_data_validation': expected true or false, got 'yes'",
        ),
    ],
)
def test_each_refusal_is_its_exact_line(values: Any, message: str) -> None:
    with pytest.raises(DetopsError) as caught:
        policy_from_dict(values, source="p.toml")
    assert str(caught.value) == message and caught.value.exit_code == 2


def test_a_budget_below_one_millisecond_is_a_budget() -> None:
    assert policy_from_dict({"latency_budget_ms": 0.5}).latency_budget_ms == 0.5


def test_files_by_suffix_and_their_errors(tmp_path: Path) -> None:
    for name in ("p.yml", "p.YAML"):
        (tmp_path / name).write_text("backend: openvino\n")
        assert load_policy(tmp_path / name).backend == "openvino"
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(DetopsError) as caught:
        load_policy(tmp_path / "p.json")
    assert str(caught.value) == f"{tmp_path / 'p.json'}: policy files are .toml, .yaml or .yml, got '.json'"
    (tmp_path / "policy").write_text("")
    with pytest.raises(DetopsError, match=r"got '\(no suffix\)'$"):
        load_policy(tmp_path / "policy")
    (tmp_path / "bad.toml").write_text("backend = \n")
    with pytest.raises(DetopsError) as caught:
        load_policy(tmp_path / "bad.toml")
    assert (
        str(caught.value)
        == f"{tmp_path / 'bad.toml'}: not a valid policy file (Invalid value (at line 1, column 11))"
    )


def test_a_policy_without_the_data_gate_says_so() -> None:

    policy = policy_from_dict({"require_data_validation": False})
    data = policy.evaluate(
        Candidate(data_valid=None, artifact_map=0.3, checkpoint_map=0.3, latency_ms=1.0), champion_map=None
    )[0]
    assert (data.name, data.passed, data.value, data.threshold, data.detail) == (
        "data_valid",
        True,
        None,
        None,
        "not required by the policy",
    )
    assert policy.to_dict()["require_data_validation"] is False and policy.to_dict()["backend"] == "ort"
