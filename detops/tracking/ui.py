"""``detops ui``: the MLflow UI on the configured tracking store."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from detops.settings import Settings
from detops.tracking.runs import local_artifact_root


def is_remote(settings: Settings) -> bool:
    """True when the tracking URI is a server (http/https), whose own UI is the answer."""
    return settings.mlflow_tracking_uri.startswith(("http://", "https://"))


DEFAULT_UI = "http://127.0.0.1:5000"
"""Where ``detops ui`` serves a local store's UI by default."""


def ui_base_url(settings: Settings) -> str:
    """The MLflow UI of the settings' store: the tracking server itself, or ``detops ui``'s address."""
    return settings.mlflow_tracking_uri.rstrip("/") if is_remote(settings) else DEFAULT_UI


def run_url(settings: Settings, *, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of one run."""
    return f"{ui_base_url(settings)}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(settings: Settings, *, model: str, version: int) -> str:
    """The MLflow UI page of one registered model version."""
    return f"{ui_base_url(settings)}/#/models/{model}/versions/{int(version)}"


def ui_command(settings: Settings, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow server`` command line serving the UI over the settings' local store (SQLite or a
    file store), one worker, artifacts read where the runs put them (``<home>/mlartifacts``)."""
    artifacts = local_artifact_root(settings)
    assert artifacts is not None, "ui_command needs a local tracking store"
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--no-serve-artifacts",
        "--default-artifact-root",
        artifacts,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
"""``mlflow server`` starts MLflow's GenAI job runner by default: one runner and seven huey consumer
processes that spend about 50 CPU-seconds importing after every start and slowed each tracking request
from 19 ms to 90 ms on a 2-core machine. detops runs no MLflow server jobs."""


def server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an ``mlflow server`` that detops starts: ``base`` (default: this
    process's) with MLflow's job runner off unless the caller chose otherwise."""
    env = dict(os.environ if base is None else base)
    for key, value in NO_JOB_RUNNER.items():
        env.setdefault(key, value)
    return env


def ensure_store_dir(settings: Settings) -> None:
    """Create the directory of a SQLite store so that the server can create the database."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
