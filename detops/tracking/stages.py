"""Logging a later stage's results (export, evaluate, profile) into the training run they came from.

The run is the one given (``--run-id``: a run id or a run directory) or, when tracking is on, the one
recorded in the run directory the source lives in (``<run dir>/mlflow_run_id``: the run directory
itself, or a file directly inside it such as ``best.pt`` or an ONNX exported beside it).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.settings import Settings, get_settings
from detops.tracking.runs import log_to_run, metric_key, resolve_run_id, run_id_for


def flatten_numbers(values: Mapping[str, Any], *, prefix: str) -> dict[str, float]:
    """``{prefix/key[/subkey...]: float}`` for every int or float leaf of ``values`` (bools skipped)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, prefix=name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[metric_key(name)] = float(value)
    return out


def source_run_id(source: str | Path) -> str | None:
    """The run id recorded for ``source``: a tracked run directory, or a file directly inside one."""
    path = Path(source)
    if path.is_dir():
        return run_id_for(path)
    if path.is_file():
        return run_id_for(path.parent)
    return None


def log_stage(
    source: str | Path,
    *,
    run_id: str | None,
    stage: str,
    name: str,
    metrics: Mapping[str, float],
    result: Mapping[str, Any],
    tags: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> str | None:
    """Log ``metrics``, ``tags`` and ``result`` (as ``<stage>/<name>.json``) into the run of
    ``run_id`` (explicit: errors are fatal) or of ``source``'s run directory when the settings' tracking
    is on (implicit: an error is a warning on stderr). Returns the run id logged into, or None."""
    settings = settings or get_settings()
    explicit = run_id is not None
    target = (
        resolve_run_id(run_id) if run_id is not None else (source_run_id(source) if settings.track else None)
    )
    if target is None:
        return None
    with tempfile.TemporaryDirectory(prefix="detops-stage-") as tmp:
        report = Path(tmp) / f"{metric_key(name).replace('/', '-')}.json"
        report.write_text(json.dumps(result, indent=2, default=str))
        try:
            log_to_run(
                target, metrics=metrics, tags=tags, artifacts=[report], artifact_dir=stage, settings=settings
            )
        except DetopsError as exc:
            if explicit:
                raise
            print(f"warning: {stage} results not logged to MLflow: {exc}", file=sys.stderr)
            return None
    return target
