"""Logging into an existing MLflow run from any stage (export, evaluate, profile, register).

A training run directory holds its MLflow run id in ``mlflow_run_id`` (one line); ``resolve_run_id``
accepts either that directory or a run id. ``log_to_run`` opens no new run: it adds metrics, params,
tags and artifacts to the given one, with the settings' tracking URI and credentials.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.fileio import atomic_open
from detops.settings import Settings, get_settings
from detops.tracking.credentials import tracking_env, without_userinfo

RUN_ID_FILE = "mlflow_run_id"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_BATCH = 1000  # MLflow's per-request limit on metrics in log_batch


def write_run_id(run_dir: str | Path, run_id: str) -> Path:
    """Record ``run_id`` in ``<run_dir>/mlflow_run_id``; returns that path."""
    path = Path(run_dir) / RUN_ID_FILE
    with atomic_open(path, "w") as fh:
        fh.write(run_id + "\n")
    return path


def run_id_for(run_dir: str | Path) -> str | None:
    """The MLflow run id recorded in a run directory, or None when it has none."""
    path = Path(run_dir) / RUN_ID_FILE
    if not path.is_file():
        return None
    run_id = path.read_text().strip()
    if not _RUN_ID.match(run_id):
        raise DetopsError(f"{path}: not an MLflow run id: {run_id!r}")
    return run_id


def resolve_run_id(source: str | Path) -> str:
    """A run id from ``source``: a run directory holding ``mlflow_run_id``, or a 32-hex run id."""
    if Path(source).is_dir():
        run_id = run_id_for(source)
        if run_id is None:
            raise DetopsError(f"run directory {source}: no {RUN_ID_FILE} file (was it trained with --track?)")
        return run_id
    text = str(source).strip()
    if not _RUN_ID.match(text):
        raise DetopsError(
            f"--run-id: {text!r} is neither a run directory nor an MLflow run id (32 hex digits)"
        )
    return text


def local_artifact_root(settings: Settings) -> str | None:
    """Where a local (SQLite or file) tracking store keeps artifacts: ``<home>/mlartifacts`` as a
    ``file://`` URI; None for a tracking server, which decides itself."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return (Path(settings.home) / "mlartifacts").resolve().as_uri()


def get_or_create_experiment(client: Any, name: str, *, artifact_location: str | None) -> str:
    """The id of experiment ``name`` through ``client`` (an ``MlflowClient``), created with
    ``artifact_location`` when missing; safe against another process creating it concurrently."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException:
        # Another process created it between the lookup and the create.
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def ensure_experiment(name: str, *, settings: Settings | None = None) -> str:
    """The id of experiment ``name`` on the settings' store, created when missing (on a local store
    with its artifacts under ``<home>/mlartifacts`` rather than the working directory)."""
    from mlflow import MlflowClient

    settings = settings or get_settings()
    with tracking_env(settings) as uri:
        return get_or_create_experiment(
            MlflowClient(tracking_uri=uri), name, artifact_location=local_artifact_root(settings)
        )


def metric_key(name: str) -> str:
    """``name`` with characters MLflow refuses in metric, param and tag keys replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", name)


def log_to_run(
    run_id: str,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    artifacts: Iterable[str | Path] = (),
    artifact_dir: str | None = None,
    tags: Mapping[str, Any] | None = None,
    step: int = 0,
    settings: Settings | None = None,
) -> None:
    """Add metrics (at ``step``), params, tags and artifact files or directories (under
    ``artifact_dir``) to the existing run ``run_id`` on the settings' tracking store.

    A param already logged with another value is refused by MLflow: a ``DetopsError`` names it."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    with tracking_env(settings) as uri:
        client = MlflowClient(tracking_uri=uri)
        try:
            client.get_run(run_id)
            now = int(time.time() * 1000)
            metric_list = [Metric(metric_key(k), float(v), now, step) for k, v in (metrics or {}).items()]
            param_list = [Param(metric_key(k), str(v)) for k, v in (params or {}).items()]
            tag_list = [RunTag(metric_key(k), str(v)) for k, v in (tags or {}).items()]
            for i in range(0, max(len(metric_list), 1), _BATCH):
                client.log_batch(
                    run_id,
                    metrics=metric_list[i : i + _BATCH],
                    params=param_list if i == 0 else [],
                    tags=tag_list if i == 0 else [],
                )
            for path in artifacts:
                p = Path(path)
                if p.is_dir():
                    client.log_artifacts(run_id, str(p), artifact_path=artifact_dir)
                elif p.is_file():
                    client.log_artifact(run_id, str(p), artifact_path=artifact_dir)
                else:
                    raise DetopsError(f"artifact {p}: no such file or directory")
        except MlflowException as exc:
            # MLflow's message may quote the URI, credentials and all (a failed request's URL)
            raise DetopsError(without_userinfo(f"MLflow run {run_id} at {uri}: {exc.message}")) from None


BEST_CHECKPOINT = "checkpoints/best.pt"
"""Where ``MlflowCallback`` puts a training's best checkpoint among its run's artifacts."""


def fetch_run_artifact(
    run_id: str, artifact: str = BEST_CHECKPOINT, *, settings: Settings | None = None
) -> Path:
    """A file of MLflow run ``run_id``'s artifacts (default: the training's best checkpoint) on this
    machine: ``<home>/runs/mlflow-<run_id>/<file name>``, downloaded once (atomically: a partial
    download never takes the final name). ``DetopsError`` naming run and artifact when it cannot be
    fetched."""
    import tempfile

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    target = Path(settings.home) / "runs" / f"mlflow-{run_id}" / Path(artifact).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tracking_env(settings) as uri, tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        try:
            local = MlflowClient(tracking_uri=uri).download_artifacts(run_id, artifact, tmp)
        except MlflowException as exc:
            # MLflow's message may quote the URI, credentials and all (a failed request's URL)
            raise DetopsError(
                without_userinfo(f"MLflow run {run_id} at {uri}: cannot fetch {artifact}: {exc.message}")
            ) from None
        except OSError as exc:
            raise DetopsError(
                without_userinfo(f"MLflow run {run_id} at {uri}: cannot fetch {artifact}: {exc}")
            ) from None
        os.replace(local, target)  # the temporary directory is beside the target: one atomic rename
    return target
