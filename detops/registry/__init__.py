"""The model registry: gates, promotion policy, MLflow registry client, register/promote/select/report.

Only :mod:`detops.registry.client` touches MLflow's registry; everything else here is pure
(:mod:`gates`, :mod:`policy`, the Pareto front in :mod:`select`) or composes those pieces. Heavy
imports (mlflow, onnx) happen inside the functions that need them, so importing this package is cheap.
"""

from __future__ import annotations

from detops.registry.gates import (
    GateResult,
    gate_accuracy_drop,
    gate_data_valid,
    gate_latency,
    gate_map,
)

__all__ = [
    "GateResult",
    "gate_accuracy_drop",
    "gate_data_valid",
    "gate_latency",
    "gate_map",
]
