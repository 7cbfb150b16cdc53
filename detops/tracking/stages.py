"""Logging a later stage's results (export, evaluate, profile) into the training run they came from.

The run is the one given (``--run-id``: a run id or a run directory) or, when tracking is on, the one
recorded in the run directory the source lives in (``<run dir>/mlflow_run_id``: the run directory
itself, or a file directly inside it such as ``best.pt`` or an ONNX exported beside it).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.settings import Settings, get_settings
from detops.tracking.runs import log_to_run, metric_key, resolve_run_id, run_id_for

log = logging.getLogger(__name__)


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
            log.warning("%s results not logged to MLflow: %s", stage, exc)
            return None
    return target


def _stem(path: str | Path) -> str:
    p = Path(path)
    return p.name if p.is_dir() else p.stem


def log_export(
    source: str | Path,
    *,
    run_id: str | None,
    path: str | Path,
    opset: int,
    errors: dict[str, float],
    settings: Settings | None = None,
) -> str | None:
    """Export results into the run of ``source`` (or ``run_id``): parity errors as
    ``export/<onnx stem>/max_rel_error/<output>``, the ONNX path and opset as tags, the report as
    ``export/<stem>.json``. Returns the run id logged into, or None (see ``log_stage``)."""
    stem = _stem(path)
    result = {"path": str(path), "opset": opset, "max_rel_error": errors}
    return log_stage(
        source,
        settings=settings,
        run_id=run_id,
        stage="export",
        name=stem,
        metrics=flatten_numbers({"max_rel_error": errors}, prefix=f"export/{stem}"),
        result=result,
        tags={f"export.{stem}.path": str(path), f"export.{stem}.opset": opset},
    )


def log_profile(
    artifact: str | Path, *, run_id: str | None, result: dict[str, Any], settings: Settings | None = None
) -> str | None:
    """A profile: ``profile/<stem>/<backend>/{model,end_to_end}/<statistic>`` metrics, the
    environment as a tag, the whole result as ``profile/<stem>-<backend>.json``."""
    stem, backend = _stem(artifact), str(result.get("backend"))
    prefix = f"profile/{stem}/{backend}"
    metrics = {
        **flatten_numbers(result.get("model", {}), prefix=f"{prefix}/model"),
        **flatten_numbers(result.get("end_to_end", {}), prefix=f"{prefix}/end_to_end"),
    }
    env = json.dumps(result.get("environment", {}), sort_keys=True, default=str)[:5000]
    return log_stage(
        artifact,
        settings=settings,
        run_id=run_id,
        stage="profile",
        name=f"{stem}/{backend}",
        metrics=metrics,
        result=result,
        tags={f"profile.{stem}.{backend}.environment": env},
    )


def log_evaluation(
    artifact: str | Path, *, run_id: str | None, stats: dict[str, Any], settings: Settings | None = None
) -> str | None:
    """An artifact evaluation: ``eval/<stem>/<backend>/<statistic>`` (and ``.../delta/<statistic>``
    with a reference, ``.../AP_class/<class>``), the result as ``eval/<stem>-<backend>.json``."""
    from detops.evaluation import STAT_NAMES

    stem, backend = _stem(artifact), str(stats.get("backend", "torch"))
    prefix = f"eval/{stem}/{backend}"
    values: dict[str, Any] = {k: stats[k] for k in STAT_NAMES if k in stats}
    if isinstance(stats.get("delta"), dict):
        values["delta"] = stats["delta"]
    values["AP_class"] = {k: v for k, v in (stats.get("per_class") or {}).items() if v is not None}
    return log_stage(
        artifact,
        settings=settings,
        run_id=run_id,
        stage="eval",
        name=f"{stem}/{backend}",
        metrics=flatten_numbers(values, prefix=prefix),
        result=stats,
    )
