"""The promotion policy: a small typed file (TOML or YAML) of flat keys over defaults kept in code.

Example ``policy.toml`` (every key optional; an unknown key or a wrong type is a one-line error
naming the file, the key and the value)::

    map_tolerance = 0.0            # candidate artifact mAP may be this far below the champion's
    max_accuracy_drop = 0.01       # artifact mAP vs its own checkpoint, mAP 50:95 points in [0, 1]
    latency_budget_ms = 1000.0     # median model latency on `backend`
    backend = "ort"                # ort | openvino | tensorrt: the backend the model ships on
    require_data_validation = true # the dataset version must have passed validation
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.registry.gates import (
    GateResult,
    gate_accuracy_drop,
    gate_data_valid,
    gate_latency,
    gate_map,
)

BACKENDS: tuple[str, ...] = ("ort", "openvino", "tensorrt")


@dataclass(frozen=True)
class Candidate:
    """The figures of one registered version that the gates judge (``None`` = not measured).

    Attributes:
        data_valid: whether its dataset version passed data validation.
        artifact_map: mAP 50:95 of the deployed artifact on the policy's backend.
        checkpoint_map: mAP 50:95 of the checkpoint the artifact was exported from.
        latency_ms: median model latency on the policy's backend.
    """

    data_valid: bool | None
    artifact_map: float | None
    checkpoint_map: float | None
    latency_ms: float | None


@dataclass(frozen=True)
class Policy:
    """Thresholds of the promotion gates; see the module docstring for the file format."""

    map_tolerance: float = 0.0
    max_accuracy_drop: float = 0.01
    latency_budget_ms: float = 1000.0
    backend: str = "ort"
    require_data_validation: bool = True

    def __post_init__(self) -> None:
        _check(self, source="policy")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (logged with each decision)."""
        return dataclasses.asdict(self)

    def evaluate(self, candidate: Candidate, *, champion_map: float | None) -> list[GateResult]:
        """Run every gate of this policy on ``candidate`` against the champion's artifact mAP.

        Returns the results in a fixed order: data_valid, map, accuracy_drop, latency. With
        ``require_data_validation`` off, the data gate is reported as passed (and says so).
        """
        if self.require_data_validation:
            data = gate_data_valid(candidate.data_valid)
        else:
            data = GateResult("data_valid", True, None, None, "not required by the policy")
        return [
            data,
            gate_map(candidate.artifact_map, champion_map, self.map_tolerance),
            gate_accuracy_drop(candidate.artifact_map, candidate.checkpoint_map, self.max_accuracy_drop),
            gate_latency(candidate.latency_ms, self.latency_budget_ms),
        ]


def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(Policy)}


def _check(policy: Policy, *, source: str) -> None:
    def bad(key: str, why: str) -> DetopsError:
        return DetopsError(f"{source}: field {key!r}: {why}, got {getattr(policy, key)!r}")

    for key in ("map_tolerance", "max_accuracy_drop"):
        value = getattr(policy, key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise bad(key, "expected a finite number >= 0")
    budget = policy.latency_budget_ms
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or not math.isfinite(budget)
        or budget <= 0
    ):
        raise bad("latency_budget_ms", "expected a finite number > 0")
    if policy.backend not in BACKENDS:
        raise bad("backend", f"expected one of {', '.join(BACKENDS)}")
    if not isinstance(policy.require_data_validation, bool):
        raise bad("require_data_validation", "expected true or false")


def policy_from_dict(values: dict[str, Any], *, source: str = "policy") -> Policy:
    """A ``Policy`` from flat ``values`` over the defaults; unknown keys and bad values raise
    ``DetopsError`` naming ``source`` and the key."""
    if not isinstance(values, dict):
        raise DetopsError(f"{source}: expected a table of policy keys, got {type(values).__name__}")
    known = _fields()
    for key in values:
        if key not in known:
            raise DetopsError(f"{source}: unknown policy key {key!r}; valid keys: {', '.join(known)}")
    try:
        policy = dataclasses.replace(Policy(), **values)
    except DetopsError as exc:
        raise DetopsError(str(exc).replace("policy: ", f"{source}: ", 1), exit_code=exc.exit_code) from None
    return policy


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """The policy in ``path`` (``.toml``, ``.yaml`` or ``.yml``), or the defaults when ``None``."""
    if path is None:
        return Policy()
    file = Path(path)
    if not file.is_file():
        raise DetopsError(f"policy file not found: {file}")
    suffix = file.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            values: Any = tomllib.loads(file.read_text())
        elif suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(file.read_text()) or {}
        else:
            raise DetopsError(
                f"{file}: policy files are .toml, .yaml or .yml, got {suffix or '(no suffix)'!r}"
            )
    except DetopsError:
        raise
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DetopsError(f"{file}: not a valid policy file ({first})") from None
    return policy_from_dict(values, source=str(file))
