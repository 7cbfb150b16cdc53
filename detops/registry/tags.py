"""Names of the ``detops.*`` tags on registered model versions, and reading them back as numbers.

Register writes them, promotion, selection and the report read them; keeping the names in one place
keeps the three in step. Tag values are strings (MLflow's rule): numbers as ``repr`` floats,
booleans as ``true``/``false``, structured values as JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

DATASET_VERSION = "detops.dataset_version"
DATA_VALID = "detops.data_valid"
GIT_COMMIT = "detops.git_commit"
RUN_ID = "detops.run_id"
RUN_DIR = "detops.run_dir"
VARIANT = "detops.variant"
IMG_SIZE = "detops.img_size"
PARAMS = "detops.params"
GFLOPS = "detops.gflops"
EXPORT_PARITY = "detops.export_parity"
MAP_CHECKPOINT = "detops.map.checkpoint"
ARTIFACT_FILE = "detops.artifact_file"
SOURCE = "detops.source"
"""Where a version's weights come from: ``trained`` (a training run) or ``official`` (a release file)."""
SOURCE_FILE = "detops.source_file"
SOURCE_SHA256 = "detops.source_sha256"
EVAL_DATA = "detops.eval_data"
"""What the version's mAP was measured on: ``coco_val2017`` when the published figures apply."""
EVAL_SPLIT = "detops.eval_split"
"""The split of the version's dataset (``detops.dataset_version``) its mAP figures were measured on."""

DECISION = "detops.promotion.decision"
DECISION_WHEN = "detops.promotion.when"
DECISION_WHO = "detops.promotion.who"
DECISION_POLICY = "detops.promotion.policy"
DECISION_AUDIT = "detops.promotion.audit_run"


def map_tag(backend: str) -> str:
    """Tag of the mAP 50:95 of the exported artifact run on ``backend`` (``ort``, ``openvino``, ...)."""
    return f"detops.map.{backend}"


def latency_tag(backend: str) -> str:
    """Tag of the median model latency in ms on ``backend``."""
    return f"detops.latency_ms.{backend}"


def latency_env_tag(backend: str) -> str:
    """Tag of the environment (JSON) the latency on ``backend`` was measured in."""
    return f"detops.latency_env.{backend}"


def gate_tag(gate: str, field: str) -> str:
    """Tag of one field (``passed``, ``value``, ``threshold``, ``detail``) of one gate's verdict."""
    return f"detops.gate.{gate}.{field}"


def fmt_float(value: float | None) -> str:
    """A float as a tag value (``""`` for ``None``)."""
    return "" if value is None else repr(float(value))


def fmt_bool(value: bool | None) -> str:
    """A boolean as a tag value: ``true``, ``false`` or ``""`` for unknown."""
    return "" if value is None else ("true" if value else "false")


def get_float(tags: dict[str, str], key: str) -> float | None:
    """The finite float stored at ``key``, or ``None`` when absent, empty or not a finite number."""
    raw = tags.get(key, "")
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def get_bool(tags: dict[str, str], key: str) -> bool | None:
    """``True``/``False`` stored at ``key``, or ``None`` when absent or anything else."""
    raw = tags.get(key, "").strip().lower()
    return {"true": True, "false": False}.get(raw)


def get_json(tags: dict[str, str], key: str) -> Any:
    """The JSON value stored at ``key``, or ``None`` when absent or not JSON."""
    raw = tags.get(key)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None
