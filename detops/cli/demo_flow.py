"""`detops demo` through Prefect: synthesise the demo data, then run the ``retrain`` flow on it.

Prefect and ``flows`` are imported inside the function (the CLI's optional orchestration layer); the
flow runs against ``DETOPS_PREFECT_API_URL``/``PREFECT_API_URL`` when set, else Prefect's ephemeral
local API, with the settings' MLflow store and DVC remote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from detops.demo import DEMO_RUNS, DemoConfig, deploy_table
from detops.settings import Settings


def flow_epochs(runs: tuple[tuple[str, int], ...]) -> int | None:
    """The retrain flow's ``epochs``: ``None`` for the demo's own schedule (the smoke preset's),
    else the one epoch count given for every variant."""
    if runs == DEMO_RUNS:
        return None
    counts = {epochs for _, epochs in runs}
    if len(counts) != 1:
        raise ValueError(f"the flow takes one epoch count for every variant, got {sorted(counts)}")
    return counts.pop()


def run_demo_flow(
    *, settings: Settings, config: DemoConfig, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Synthesise the demo dataset into ``<project>/data`` (as ``run_demo`` does), run the ``retrain``
    flow with the smoke preset on it, print the deploy table, the comparison report and the command
    that opens the MLflow UI; returns the flow's result."""
    # An ephemeral API server starts in a subprocess; on a loaded 2-core machine it needs longer
    # than Prefect's default to answer.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here; no telemetry
    if settings.prefect_api_url:
        os.environ.setdefault("PREFECT_API_URL", settings.prefect_api_url)
    from detops.cli.orchestrate import ensure_tag_limits, tag_limits
    from detops.data.synth import synthesize
    from flows.retrain import retrain

    started = time.monotonic()
    data_root = settings.project_root / "data"
    echo(f"[1/2] synthesising a COCO-format dataset into {data_root} (seed {config.seed})")
    echo("      " + str(synthesize(data_root, train=config.train_images, val=config.val_images, size=config.synth_size, seed=config.seed)))  # fmt: skip
    where = os.environ.get("PREFECT_API_URL") or "Prefect's ephemeral local API"
    echo(f"[2/2] running the Prefect retrain flow (smoke preset) on {where}")
    # one training at a time, as on one CPU worker; on the embedded API, also slots a killed demo left
    ensure_tag_limits(tag_limits(), fresh="PREFECT_API_URL" not in os.environ)
    result = retrain(
        variants=tuple(variant for variant, _ in config.runs),
        dataset_root=str(data_root),
        preset="smoke",
        epochs=flow_epochs(config.runs),
        img_size=config.img_size,
    )
    echo("")
    echo(deploy_table(result["deployed"]))
    echo("")
    for d in result["decisions"]:
        echo(f"[promote] {d['model']} v{d['version']}: {d['decision']}; champion v{d['champion']}")
    echo(f"[tensorrt] {result['tensorrt']['detail']}")
    echo("")
    echo("Comparison report (registry champions beside the published figures):")
    echo(result["report"]["markdown"])
    echo("Open the MLflow UI (runs, registered models, aliases, audit log) with:  detops ui")
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    echo(f"(demo finished in {minutes} min {seconds:02d} s)")
    return result
