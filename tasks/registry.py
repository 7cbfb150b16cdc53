"""Registry tasks: register a run (cached on its training key), promote it, publish the report."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import task

from tasks.caching import register_cache_key
from tasks.retry import retry_transient

_MLFLOW_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [5, 20, 60],
    "retry_condition_fn": retry_transient,
}
_MLFLOW: dict[str, Any] = {**_MLFLOW_RETRIES, "timeout_seconds": 1800}
"""Retries of transient MLflow failures, and a timeout for the tasks a flow calls directly (in its
own thread). Mapped tasks (``promote``) run in worker threads, where Prefect cannot enforce a
timeout: they rely on MLflow's HTTP request timeout instead."""


@task(
    name="register",
    task_run_name="register-{run[variant]}",
    tags=["mlflow"],
    cache_key_fn=register_cache_key,
    cache_expiration=timedelta(days=30),
    persist_result=True,
    **_MLFLOW,
)
def register(
    run: dict[str, Any],
    *,
    artifact: dict[str, Any],
    evaluations: dict[str, dict[str, Any]],
    profiles: dict[str, dict[str, Any]],
    data_valid: bool,
) -> dict[str, Any]:
    """``register_deployed``: ``run`` (``train``'s summary) with the measured deploy results as a new
    version of ``detops-<variant>`` pointing at the training's MLflow run; ``{"variant", "model",
    "version", "run_id"}``. Cached on the run's training key, so a rerun of unchanged training adds no
    second version."""
    from detops.registry.pipeline import register_deployed
    from detops.settings import get_settings

    return register_deployed(
        run,
        settings=get_settings(),
        deployed={
            "onnx": artifact["onnx"],
            "evaluations": evaluations,
            "profiles": profiles,
            "max_rel_error": artifact["max_rel_error"],
        },
        data_valid=data_valid,
    )


@task(name="find-release-files")
def find_release_files(coco: str, weights_dir: str, variants: list[str]) -> dict[str, str]:
    """{variant: release file} of ``variants`` (``["all"]``: the table's eight) present in
    ``weights_dir``, after checking that ``coco`` holds COCO 2017's val split."""
    from detops.registry.latency_only import resolve_variants
    from detops.registry.reproduce import check_coco2017, release_files

    check_coco2017(coco)
    return {v: str(p) for v, p in release_files(weights_dir, resolve_variants(variants)).items()}


@task(name="register-official", task_run_name="register-official-{variant}", tags=["mlflow"], **_MLFLOW)
def register_official(
    variant: str,
    weights: str,
    *,
    data_root: str,
    backends: tuple[str, ...] = ("ort", "openvino"),
    profile_seconds: float = 1.5,
    eval_data: str | None = None,
) -> dict[str, Any]:
    """``register_weights``: the release file ``weights`` of ``variant``, evaluated on ``data_root``'s
    val split, as a new version of ``detops-<variant>`` (``eval_data``: what that split is, e.g.
    ``coco_val2017``); ``{"variant", "model", "version", "run_id", "tags"}``."""
    from detops.registry import tags as T
    from detops.registry.register import register_weights

    reg = register_weights(
        weights,
        variant=variant,
        data_root=data_root,
        backends=backends,
        profile_seconds=profile_seconds,
        tags={T.EVAL_DATA: eval_data} if eval_data else None,
    )
    return {
        "variant": variant,
        "model": reg.model,
        "version": reg.version,
        "run_id": reg.run_id,
        "tags": reg.tags,
    }


@task(name="promote", task_run_name="promote-{registered[variant]}", tags=["mlflow"], **_MLFLOW_RETRIES)
def promote(
    registered: dict[str, Any],
    *,
    policy: dict[str, Any] | None = None,
    latency_budget_ms: float | None = None,
) -> dict[str, Any]:
    """``judge``: ``registered``'s version under ``policy`` (flat ``Policy`` fields over the built-in
    defaults; ``latency_budget_ms`` overrides the policy's); ``champion`` moves to it when every gate
    passes. ``{"model", "version", "decision", "champion", "gates"}``."""
    from detops.registry.pipeline import judge
    from detops.registry.policy import policy_from_dict

    flat = {
        **(policy or {}),
        **({} if latency_budget_ms is None else {"latency_budget_ms": latency_budget_ms}),
    }
    return judge(registered, policy=policy_from_dict(flat, source="flow parameter 'policy'"))


@task(name="report", tags=["mlflow"], **_MLFLOW)
def report(
    decisions: list[dict[str, Any]],
    *,
    registered: list[dict[str, Any]] | None = None,
    notes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write the comparison report (logged to MLflow), and publish it with the promotion decisions as
    the ``comparison-report`` markdown (with links to each ``registered`` version and its MLflow run)
    and ``promotions`` table artifacts; ``write_report``'s dict."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from detops.registry.client import open_registry
    from detops.registry.pipeline import report as write_report
    from detops.registry.pipeline import version_links
    from detops.settings import get_settings
    from detops.tracking.ui import is_remote, ui_base_url

    settings = get_settings()
    with open_registry(settings) as client:
        out = write_report(settings, client=client)
        links = version_links(registered or [], settings=settings, client=client)
        listed = "".join(
            f"\n- {x['model']} [version {x['version']}]({x['version_url']}), "
            f"trained in MLflow run [{x['run_id'][:8]}]({x['run_url']})"
            for x in links
        )
        extra = "".join(f"\n\n> {n}" for n in notes)
        ui = (
            f"the tracking server {ui_base_url(settings)}"
            if is_remote(settings)
            else f"`detops ui` ({ui_base_url(settings)})"
        )
        create_markdown_artifact(
            key="comparison-report",
            markdown=(
                f"# Comparison report\n\n{out['markdown']}{extra}\n\n"
                + (f"## Registered in this run\n{listed}\n\n" if links else "")
                + f"MLflow UI: {ui}."
            ),
            description="Registry champions beside the published figures",
        )
        create_table_artifact(
            key="promotions",
            table=[
                {
                    "model": d["model"],
                    "version": d["version"],
                    "decision": d["decision"],
                    "champion": d["champion"],
                    "failed gates": ", ".join(g["gate"] for g in d["gates"] if not g["passed"]) or "-",
                }
                for d in decisions
            ],
            description="Promotion decisions of this flow run",
        )
        return out


@task(
    name="benchmark-version",
    task_run_name="benchmark-{variant}-v{version}",
    tags=["mlflow", "tensorrt"],  # `tensorrt`: one engine build per GPU (the tag's concurrency limit)
    **_MLFLOW_RETRIES,
    timeout_seconds=3 * 3600,
)
def benchmark_version(
    variant: str,
    version: int,
    *,
    backends: tuple[str, ...],
    seconds: float,
    data: str | None = None,
) -> dict[str, Any]:
    """``benchmark_version``: registry version ``version`` of ``detops-<variant>`` profiled on
    ``backends`` here (TensorRT engine built and its mAP measured where TensorRT and a GPU are), the
    worker-only figures tagged onto the version; ``VersionBenchmark.as_dict()``."""
    from detops.registry.benchmark import benchmark_version as run
    from detops.settings import get_settings

    settings = get_settings()
    return run(variant, version, backends=backends, seconds=seconds, data=data, settings=settings).as_dict()


@task(name="publish-benchmark")
def publish_benchmark(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Publish the ``benchmark`` table (one row per version and backend: median ms, the mAP measured
    here beside the checkpoint's, status) and the ``benchmark-notes`` markdown of what was not
    measured and why; returns the rows."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from detops.registry.benchmark import benchmark_notes, benchmark_rows

    rows = benchmark_rows(results)
    create_table_artifact(
        key="benchmark", table=rows, description="Median model latency at batch 1, and mAP measured here"
    )
    create_markdown_artifact(key="benchmark-notes", markdown=benchmark_notes(results))
    return rows
