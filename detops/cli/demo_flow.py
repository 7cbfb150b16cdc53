"""`detops demo` through Prefect: synthesise the demo data, then run the ``retrain`` flow on it.

Prefect and ``flows`` are imported inside the function (the CLI's optional orchestration layer); the
flow runs against ``DETOPS_PREFECT_API_URL``/``PREFECT_API_URL`` when set, else Prefect's ephemeral
local API, with the settings' MLflow store and DVC remote.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from detops.demo import DEMO_RUNS, DemoConfig, synthesize_demo_data
from detops.settings import Settings

log = logging.getLogger("detops.demo")


def flow_epochs(runs: tuple[tuple[str, int], ...]) -> int | None:
    """The retrain flow's ``epochs``: ``None`` for the demo's own schedule (the smoke preset's),
    else the one epoch count given for every variant."""
    if runs == DEMO_RUNS:
        return None
    counts = {epochs for _, epochs in runs}
    if len(counts) != 1:
        raise ValueError(f"the flow takes one epoch count for every variant, got {sorted(counts)}")
    return counts.pop()


def task_stage_times(flow_run_id: Any) -> list[tuple[str, float]]:
    """(task run name, seconds it ran) for every task run of the flow run, in the order they started;
    cached task runs count the time it took to find them in the cache."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    timed = [(r.start_time, r.end_time, r.name) for r in runs if r.start_time and r.end_time]
    return [(name, (end - start).total_seconds()) for start, end, name in sorted(timed)]


def run_demo_flow(*, settings: Settings, config: DemoConfig) -> dict[str, Any]:
    """Synthesise the demo dataset into ``<project>/data`` (as ``run_demo`` does) and run the
    ``retrain`` flow with the smoke preset on it; returns the flow's result plus ``stages`` ([(name,
    seconds)]: the API's start, the synthesis, then every task run as Prefect recorded it)."""
    # An ephemeral API server starts in a subprocess; on a loaded 2-core machine it needs longer
    # than Prefect's default to answer.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here; no telemetry
    if settings.prefect_api_url:
        os.environ.setdefault("PREFECT_API_URL", settings.prefect_api_url)
    from detops.cli.orchestrate import ensure_tag_limits, tag_limits
    from flows.retrain import retrain

    stages: list[tuple[str, float]] = []
    started = time.perf_counter()
    data_root = settings.project_root / "data"
    synthesize_demo_data(data_root, config=config)
    stages.append(("synthesise data", time.perf_counter() - started))
    where = os.environ.get("PREFECT_API_URL") or "Prefect's ephemeral local API"
    log.info("[flow] running the Prefect retrain flow (smoke preset) on %s", where)
    started = time.perf_counter()
    # one training at a time, as on one CPU worker; on the embedded API, also slots a killed demo left
    ensure_tag_limits(tag_limits(), fresh="PREFECT_API_URL" not in os.environ)
    stages.append(("start the Prefect API", time.perf_counter() - started))
    state = retrain(
        variants=tuple(variant for variant, _ in config.runs),
        dataset_root=str(data_root),
        preset="smoke",
        epochs=flow_epochs(config.runs),
        img_size=config.img_size,
        return_state=True,
    )
    result: dict[str, Any] = state.result()  # raises the flow's error when it failed
    stages += task_stage_times(state.state_details.flow_run_id)
    return {**result, "stages": stages}
