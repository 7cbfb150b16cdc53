"""Deploy tasks: export, evaluate the artifact against its checkpoint, profile, dispatch TensorRT."""

from __future__ import annotations

from typing import Any

from prefect import task

from tasks.retry import retry_transient


@task(name="export-onnx", task_run_name="export-{run[variant]}", tags=["deploy"], timeout_seconds=1800)
def export(run: dict[str, Any]) -> dict[str, Any]:
    """``export_run``: the best checkpoint of ``run`` (``train``'s summary) to ONNX at batch 1, parity
    errors logged into its MLflow run; ``{"variant", "onnx", "checkpoint", "max_rel_error", "run_id"}``."""
    from detops.deploy.pipeline import export_run

    return export_run(run)


# No timeout_seconds on the tasks the flow maps: they run in the task runner's worker threads, where
# Prefect's timeout cannot interrupt them (and warns on every run). An evaluation is bounded by the
# size of the val split it scores.
@task(name="evaluate-artifact", task_run_name="evaluate-{artifact[variant]}", tags=["deploy"])
def evaluate(
    artifact: dict[str, Any], *, dataset: dict[str, Any], backends: tuple[str, ...] = ("ort",)
) -> dict[str, dict[str, Any]]:
    """``evaluate_run``: COCO stats of the exported ``artifact`` on each of ``backends`` on the val
    split against its checkpoint (scored once), logged into its MLflow run; ``{backend: stats}``."""
    from detops.data.versioning import dataset_root_for
    from detops.deploy.pipeline import evaluate_run
    from detops.settings import get_settings

    data_root = dataset_root_for(dataset, settings=get_settings())
    return evaluate_run(artifact, backends=backends, data_root=str(data_root))


@task(
    name="profile",
    task_run_name="profile-{artifact[variant]}-{backend}",
    tags=["deploy", "profile"],
    timeout_seconds=1800,
)
def profile(artifact: dict[str, Any], *, backend: str, seconds: float = 1.5) -> dict[str, Any]:
    """``profile_run``: ``artifact``'s ONNX file (``export``'s dict, or ``{"onnx"}``) on ``backend`` at
    batch 1 (``PROFILE_SCHEMA``), logged into its training's MLflow run when known."""
    from detops.deploy.pipeline import profile_run

    return profile_run(artifact, backend=backend, seconds=seconds)


@task(
    name="dispatch-t4",
    # Not `tensorrt`: this task only waits for the t4 pool's run, whose benchmark task takes the
    # `tensorrt` slot (with one slot per GPU, holding it here would deadlock that run).
    tags=["dispatch"],
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=retry_transient,
    timeout_seconds=4 * 3600,
)
def dispatch_tensorrt(
    versions: dict[str, int],
    *,
    pool: str = "t4",
    deployment: str = "benchmark/benchmark-t4",
    data: str | None = None,
) -> dict[str, Any]:
    """Run the ``benchmark`` deployment on the ``pool`` work pool for ``versions`` ({variant:
    registry version}) when that pool has an online worker; otherwise publish a markdown note that
    TensorRT was skipped. ``data``: the benchmark's ``data`` (a directory on that worker holding a
    dataset that is on no DVC remote). Returns ``{"dispatched": bool, "detail", "flow_run_id"?,
    "state"?}``."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.deployments import run_deployment

    from tasks.workers import pool_has_worker

    online, detail = pool_has_worker(pool)
    if not online:
        note = f"TensorRT build, profile and engine evaluation skipped: {detail}."
        create_markdown_artifact(key="tensorrt-skipped", markdown=f"**{note}**", description=note)
        return {"dispatched": False, "detail": note}
    parameters: dict[str, Any] = {"versions": versions, **({"data": data} if data else {})}
    run: Any = run_deployment(name=deployment, parameters=parameters, timeout=4 * 3600)
    return {
        "dispatched": True,
        "detail": f"flow run {run.id} on pool {pool}",
        "flow_run_id": str(run.id),
        "state": run.state.type.value if run.state else None,
    }
