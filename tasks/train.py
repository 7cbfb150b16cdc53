"""Training tasks: plan a run (config + cache key + run directory), then train it (cached, resumable)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import task

from tasks.caching import code_digest, home_instance, run_key, train_cache_key


@task(name="plan-run", task_run_name="plan-{variant}", tags=["plan"])
def plan_run(
    variant: str,
    *,
    preset: str,
    epochs: int | None,
    dataset: dict[str, Any],
    img_size: int | None = None,
    seed: int = 0,
    on_pool: bool = False,
) -> dict[str, Any]:
    """The run of ``variant`` on the versioned ``dataset`` (``version_data``'s dict): ``{"variant",
    "config" (fit kwargs), "key" (dataset version + config + digest of the detops and models sources +
    home (its path and instance, see ``home_instance``) and tracking store), "run_dir",
    "dataset" (version, remote, and the directory it was versioned from)}``. ``img_size`` overrides the
    preset's input size; the training step finds the data by version on its own machine.
    The run directory is derived from the key, so a retried or repeated run finds its checkpoints.
    ``on_pool`` (a run of the ``train`` deployment, on a machine a retry may not get back): no run
    directory (``None``); the training uses a scratch one and keeps its state in the artifact store."""

    import detops
    import models
    from detops.presets import train_config
    from detops.settings import get_settings

    config = train_config(variant, preset=preset, epochs=epochs, img_size=img_size, seed=seed)
    code = code_digest(Path(detops.__file__).parent, Path(models.__file__).parent)
    settings = get_settings()
    home = settings.home
    # where the run and its registration live belong to the key too: another clone or registry
    # must not be handed this one's cached run directory or model version
    where = {
        "home": str(Path(home).resolve()),
        "home_instance": home_instance(home),
        "tracking": settings.mlflow_tracking_uri,
    }
    key = run_key(dataset_md5=dataset["md5"], config={**config, **where}, code=code)
    return {
        "variant": variant,
        "config": config,
        "key": key,
        "run_dir": None if on_pool else str(home / "runs" / f"retrain-{variant}-{key[:12]}"),
        "dataset": {k: dataset.get(k) for k in ("version", "remote", "root")},
    }


TRAIN_TIME_LIMIT_S = 6 * 3600
"""Wall-time limit of one training (``TimeLimit``, checked every step: the task runs in a worker
thread, where Prefect's own ``timeout_seconds`` cannot interrupt it)."""


@task(
    name="train",
    task_run_name="train-{plan[variant]}",
    tags=["train"],
    cache_key_fn=train_cache_key,
    cache_expiration=timedelta(days=30),
    persist_result=True,
    retries=1,
    retry_delay_seconds=10,
)
def train(plan: dict[str, Any], gpus: int = 1) -> dict[str, Any]:
    """Train ``plan`` (``plan_run``'s dict), tracked in MLflow like ``detops train`` (the flow run's id
    and URL as tags), and return ``fit``'s summary plus ``key`` and the MLflow ``run_id``.

    Cached on the plan's key: an unchanged rerun returns the stored summary and trains nothing. A
    run directory that already holds a ``last.pt`` (a killed worker, a retry) is resumed from it
    rather than started again, in the same MLflow run. A plan without a run directory (``on_pool``)
    trains in a scratch directory removed afterwards, uploads its state after every epoch and, on a
    retry, resumes from the last state its MLflow run holds."""
    from detops.data.versioning import dataset_root_for
    from detops.settings import get_settings
    from detops.tracking.resume import RUN_KEY_TAG, attempt_dir
    from tasks.runtime import flow_run_tags

    settings = get_settings()
    on_pool = plan["run_dir"] is None
    where = attempt_dir(plan["run_dir"], run_key=plan["key"], variant=plan["variant"], settings=settings)
    with where as (run_dir, resumed):
        launch = _Launch(
            run_dir=run_dir,
            data_root=dataset_root_for(plan["dataset"], settings=settings),
            resume=resumed,
            tags={**flow_run_tags(), RUN_KEY_TAG: plan["key"]},
            upload_last=on_pool,
        )
        summary = _train_under_torchrun(plan, launch, gpus=gpus) if gpus > 1 else _train_here(plan, launch)
    if on_pool:  # gone with the scratch directory: the next steps go by MLflow run id
        summary = {**summary, "run_dir": None, "checkpoints": None}
    return {**summary, "key": plan["key"], "resumed": resumed}


@dataclass(frozen=True)
class _Launch:
    """Where and how one attempt of a planned training runs on this worker."""

    run_dir: Path
    data_root: Path
    resume: bool
    """Continue the run directory's ``last.pt`` (and its MLflow run)."""
    tags: dict[str, str]
    upload_last: bool
    """Upload the training state after every epoch (a ``train`` flow run's scratch directory)."""


def _train_here(plan: dict[str, Any], launch: _Launch) -> dict[str, Any]:
    """``plan`` in this process, tracked like ``detops train``; the summary with the ``run_id``."""
    from detops.engine.callbacks import TimeLimit
    from detops.engine.fit import fit
    from detops.engine.fit import resume as resume_run
    from detops.tracking.training import tracked_training

    config = dict(plan["config"])
    with tracked_training(resume=launch.resume, tags=launch.tags, upload_last=launch.upload_last) as tracking:
        callbacks = [*tracking.callbacks, TimeLimit(TRAIN_TIME_LIMIT_S)]
        if launch.resume:
            summary = resume_run(launch.run_dir, epochs=config["epochs"], callbacks=callbacks)
        else:
            variant = config.pop("variant")
            # progress bars are noise in a run's log: one line per epoch instead
            overrides = {**config.pop("overrides", {}), "progress": False}
            summary = fit(
                variant,
                data_root=launch.data_root,
                out_dir=launch.run_dir,
                callbacks=callbacks,
                overrides=overrides,
                **config,
            )
    return {**summary, "run_id": tracking.run_id}


def _train_under_torchrun(plan: dict[str, Any], launch: _Launch, *, gpus: int) -> dict[str, Any]:
    """``plan`` on ``gpus`` processes (``torchrun``), each rank's lines in this task run's log; rank 0
    tracks the MLflow run (with the launch's tags) and records its id in the run directory."""
    from detops.engine.launch import train_args, train_distributed
    from detops.tracking.runs import run_id_for

    log = logging.getLogger("detops.train")
    args = train_args(
        plan["config"],
        data_root=launch.data_root,
        resume=launch.resume,
        tags=launch.tags,
        upload_last=launch.upload_last,
    )
    summary = train_distributed(gpus, args, run_dir=launch.run_dir, resume=launch.resume, on_line=log.info)
    return {**summary, "run_id": run_id_for(launch.run_dir)}


TRAIN_DEPLOYMENT = "train/train-gpu"


@task(name="train-on-pool", task_run_name="train-on-{pool}", tags=["dispatch"])
def train_on_pool(
    variants: list[str],
    *,
    dataset: dict[str, Any],
    preset: str,
    epochs: int | None,
    img_size: int | None,
    pool: str,
    gpus: int = 1,
    deployment: str = TRAIN_DEPLOYMENT,
    poll_s: float = 10.0,
) -> list[dict[str, Any]]:
    """One run of the ``train`` deployment per variant, all started at once (the pool's
    concurrency limit decides how many train together), then waited for in order; their summaries,
    in the order of ``variants``. A run that does not complete fails this task naming the variant,
    the flow run and its final state. The runs' results must be readable here: on a cluster, a
    shared result storage (``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``, e.g. the S3 bucket)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from detops.errors import DetopsError

    started: list[Any] = [
        run_deployment(
            name=deployment,
            parameters={
                "variant": variant,
                "dataset": dataset,
                "preset": preset,
                "epochs": epochs,
                "img_size": img_size,
                "gpus": gpus,
            },
            job_variables={"gpus": gpus},
            timeout=0,  # started, not awaited: the others start at once
        )
        for variant in variants
    ]
    summaries = []
    deadline = time.monotonic() + TRAIN_TIME_LIMIT_S + 3600
    for variant, run in zip(variants, started, strict=True):
        with get_client(sync_client=True) as client:
            while (state := client.read_flow_run(run.id).state) is None or not state.is_final():
                if time.monotonic() > deadline:
                    raise DetopsError(
                        f"train-{variant}: flow run {run.id} still running after the time limit"
                    )
                time.sleep(poll_s)
        if not state.is_completed():  # the loop left it final, so it is set
            detail = f": {state.message}" if state.message else ""
            raise DetopsError(
                f"train-{variant}: flow run {run.id} on pool {pool!r} ended {state.name}{detail}", exit_code=1
            )
        summaries.append({**state.result(), "trained_on": pool})
    return summaries
