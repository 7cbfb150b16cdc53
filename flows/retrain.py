"""The ``retrain`` flow: validate -> version -> per variant (bounded): train -> export -> evaluate ->
profile -> register; TensorRT on the ``t4`` pool when it has a worker; promote; report."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from detops.presets import preset_dict
from tasks.data import pull_data, validate_data, version_data
from tasks.deploy import dispatch_tensorrt, evaluate, export, profile
from tasks.registry import promote, register, report
from tasks.train import plan_run, train, train_on_pool
from tasks.workers import pool_has_worker

log = logging.getLogger("detops.flows.retrain")

DEFAULT_VARIANTS: tuple[str, ...] = ("damo_yolo_t", "rtdetrv2_s")
CPU_BACKENDS: tuple[str, ...] = ("ort", "openvino")
MAX_PARALLEL = 1
"""Tasks in flight at once in one flow run (the task runner's threads). One: a flow run's process
trains on the CPUs of one machine, so a second training there would only share them; and a training
in a second thread, while the first one's thread lives on in the pool, ran 11% slower per epoch
(RT-DETRv2-S at 192 px, 30.5 s against 34.1 s on this 2-core Xeon; the same in one thread after the
other). The ``train`` tag's concurrency limit bounds trainings across flow runs."""


@flow(name="retrain", task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL))  # type: ignore[arg-type]
def retrain(
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
    dataset_root: str | None = None,
    dataset_version: str | None = None,
    preset: str = "smoke",
    epochs: int | None = None,
    img_size: int | None = None,
    policy: dict[str, Any] | None = None,
    latency_budget_ms: float | None = None,
    backends: tuple[str, ...] = CPU_BACKENDS,
    push: bool = True,
    tensorrt_pool: str = "t4",
    train_pool: str = "gpu",
    gpus: int = 1,
) -> dict[str, Any]:
    """Retrain ``variants`` on dataset version ``dataset_version`` (pulled from the DVC remote by each
    step that reads it, on the worker that runs it) or, without one, on the dataset at
    ``dataset_root`` (default ``<project>/data``), validated and versioned first, under
    ``preset`` (``smoke``|``full``; ``epochs`` and ``img_size`` override it), deploy, register and promote
    them under ``policy`` (flat policy fields) with ``latency_budget_ms``; returns the dataset
    version, ``deployed`` ({variant: onnx, evaluation, profiles}), registrations, decisions, the
    TensorRT dispatch and the report.

    Training: when work pool ``train_pool`` has an online worker, one ``train`` flow run per variant
    on it (``train-gpu``, ``gpus`` GPUs each, under torchrun when above 1); otherwise in this flow
    run's process, one variant after the other. The steps after it find the checkpoints by MLflow
    run id, so they need not share a disk with the training."""
    if dataset_version is not None:
        dataset = pull_data(dataset_version)
    else:
        checked = validate_data(dataset_root)
        dataset = version_data(checked["root"], push=push)
    profile_seconds = preset_dict(preset)["profile_seconds"]  # an unknown preset stops here
    on_pool, why = pool_has_worker(train_pool)
    if on_pool:  # each train flow run plans its run on its own worker
        runs = train_on_pool(
            list(variants),
            dataset=dataset,
            preset=preset,
            epochs=epochs,
            img_size=img_size,
            pool=train_pool,
            gpus=gpus,
        )
    else:
        log.info("training in this flow run's process: %s", why)
        plans = plan_run.map(
            variants, preset=preset, epochs=epochs, img_size=img_size, dataset=unmapped(dataset)
        ).result()
        runs = train.map(plans).result()
    artifacts = [export(run) for run in runs]  # one at a time: torch.onnx.export is not thread-safe
    # every profiled backend is evaluated too, so each is selectable by `select`/`promote`
    evaluations = evaluate.map(artifacts, dataset=unmapped(dataset), backends=unmapped(backends)).result()
    # one profile at a time: two timings sharing the machine would each report the other's load
    profiles = [{b: profile(a, backend=b, seconds=profile_seconds) for b in backends} for a in artifacts]
    registered = [
        register(run, artifact=a, evaluations=e, profiles=p, data_valid=True)
        for run, a, e, p in zip(runs, artifacts, evaluations, profiles, strict=True)
    ]
    tensorrt = dispatch_tensorrt({r["variant"]: r["version"] for r in registered}, pool=tensorrt_pool)
    decisions = promote.map(registered, policy=unmapped(policy), latency_budget_ms=latency_budget_ms).result()
    out = report(decisions, registered=registered, notes=(tensorrt["detail"],))
    deployed = {
        a["variant"]: {"onnx": a["onnx"], "evaluations": e, "profiles": p, "run_id": a["run_id"]}
        for a, e, p in zip(artifacts, evaluations, profiles, strict=True)
    }
    return {
        "dataset": dataset,
        "deployed": deployed,
        "registered": registered,
        "decisions": decisions,
        "tensorrt": tensorrt,
        "report": out,
    }
