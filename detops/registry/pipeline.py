"""The registry's end of the main job, step by step: register a deployed run, judge it, report.

The flow's ``register``/``promote``/``report`` tasks and ``detops demo --no-flow`` call these same
functions; each returns plain dicts (what a Prefect task passes on) and logs one line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.registry.promote import Decision

log = logging.getLogger(__name__)


def register_deployed(
    run: dict[str, Any], *, deployed: dict[str, Any], settings: Any, client: Any = None, data_valid: bool
) -> dict[str, Any]:
    """Register ``run`` (a ``fit`` summary) with its ``deployed`` results (``{"onnx", "evaluations",
    "profiles", "max_rel_error"}``) as a new version of ``detops-<variant>``, pointing at the run's
    MLflow run; ``{"variant", "model", "version", "run_id"}``."""
    from detops.registry.register import register_run

    # the run directory when this machine has it (the training ran here), else the MLflow run
    run_dir = run.get("run_dir")
    source = run_dir if run_dir and Path(run_dir).is_dir() else run.get("run_id") or run_dir
    if not source:
        raise DetopsError(f"{run['variant']}: neither a run directory here nor an MLflow run to register")
    reg = register_run(source, settings=settings, client=client, deployed=deployed, data_valid=data_valid)
    return {"variant": run["variant"], "model": reg.model, "version": reg.version, "run_id": reg.run_id}


def decision_dict(decision: Decision) -> dict[str, Any]:
    """A promotion ``Decision`` as plain values: ``{"model", "version", "decision", "champion",
    "gates": [{"gate", "passed", "detail"}]}``."""
    return {
        "model": decision.model,
        "version": decision.version,
        "decision": decision.decision,
        "champion": decision.champion,
        "gates": [{"gate": g.name, "passed": g.passed, "detail": g.detail} for g in decision.gates],
    }


def judge(registered: dict[str, Any], *, policy: Any = None, client: Any = None) -> dict[str, Any]:
    """Promote ``registered``'s version (``{"variant", "version"}``) under ``policy`` (default: the
    built-in one); ``decision_dict`` of the outcome. A rejection is reported, not raised."""
    from detops.registry.promote import promote

    decision = promote(registered["variant"], policy=policy, version=registered["version"], client=client)
    out = decision_dict(decision)
    failed = [g for g in out["gates"] if not g["passed"]]
    log.info(
        "%-12s %s v%d: %s%s; champion v%s",
        registered["variant"],
        out["model"],
        out["version"],
        out["decision"],
        f" ({'; '.join(g['detail'] for g in failed)})" if failed else "",
        out["champion"],
    )
    for gate in out["gates"]:
        log.debug("  %s  %-14s %s", "PASS" if gate["passed"] else "FAIL", gate["gate"], gate["detail"])
    return out


def version_links(
    registered: Sequence[dict[str, Any]], *, settings: Any, client: Any
) -> list[dict[str, Any]]:
    """For each registered version (``register_deployed``'s dicts): ``{"model", "version", "run_id",
    "version_url", "run_url"}``, the MLflow UI pages of the version and of the run it points at."""
    from detops.tracking.ui import model_version_url, run_url

    return [
        {
            "model": r["model"],
            "version": r["version"],
            "run_id": r["run_id"],
            "version_url": model_version_url(settings, model=r["model"], version=r["version"]),
            "run_url": run_url(
                settings, experiment_id=client.run_experiment_id(r["run_id"]), run_id=r["run_id"]
            ),
        }
        for r in registered
    ]


def report(settings: Any, *, client: Any = None) -> dict[str, Any]:
    """Write the comparison report under ``<home>/report`` (and to MLflow); ``write_report``'s dict."""
    from detops.registry.report import write_report

    return write_report(Path(settings.home) / "report", client=client)


def register_and_promote(
    runs: Sequence[dict[str, Any]],
    *,
    deployed: dict[str, Any],
    settings: Any,
    data_valid: bool,
    policy: Any = None,
) -> dict[str, Any]:
    """Register each run (``fit`` summaries) with ``deployed[variant]``, promote it, write the report;
    ``{"registered": [...], "decisions": [...], "report": ...}`` as the retrain flow returns them."""
    from detops.registry.client import open_registry

    with open_registry(settings) as client:
        registered = [
            register_deployed(
                run,
                deployed=deployed[run["variant"]],
                settings=settings,
                client=client,
                data_valid=data_valid,
            )
            for run in runs
        ]
        decisions = [judge(r, policy=policy, client=client) for r in registered]
        out = report(settings, client=client)
    return {"registered": registered, "decisions": decisions, "report": out}
