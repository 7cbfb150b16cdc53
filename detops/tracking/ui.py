"""``detops ui``: the MLflow UI on the configured tracking store."""

from __future__ import annotations

import sys
from pathlib import Path

from detops.settings import Settings
from detops.tracking.runs import local_artifact_root


def is_remote(settings: Settings) -> bool:
    """True when the tracking URI is a server (http/https), whose own UI is the answer."""
    return settings.mlflow_tracking_uri.startswith(("http://", "https://"))


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


def ensure_store_dir(settings: Settings) -> None:
    """Create the directory of a SQLite store so that the server can create the database."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
