"""The ``train`` flow: one variant, one dataset version, one resolved config, on the worker that runs
it (the ``train-gpu`` deployment: the ``gpu`` pool). With ``gpus`` > 1 the training runs under
``torchrun --standalone --nproc_per_node gpus``; each rank's lines reach this flow run's log.

``retrain`` starts one run of it per variant when the ``gpu`` pool has a worker (``run_deployment``),
and otherwise trains in its own process as before.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.train import plan_run, train


@flow(name="train", flow_run_name="train-{variant}", persist_result=True, retries=1, retry_delay_seconds=10)
def train_variant(
    variant: str,
    dataset: dict[str, Any],
    preset: str = "smoke",
    epochs: int | None = None,
    img_size: int | None = None,
    gpus: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``variant`` on ``dataset`` (``{"version", "remote", ...}``, pulled here by version) under
    ``preset``; returns the training summary with ``run_id`` (the MLflow run, whose artifacts hold the
    best checkpoint for the next steps on other workers).

    A failed attempt (a rank killed, a lost node) fails the flow run's attempt with its error; the
    retry, on whichever worker takes it, resumes from the last epoch the artifact store holds."""
    plan = plan_run(
        variant, preset=preset, epochs=epochs, img_size=img_size, dataset=dataset, seed=seed, on_pool=True
    )
    # the flow run retries, not the task: a retry may be another worker's, with none of this one's disk
    return train.with_options(retries=0)(plan, gpus=gpus)
