"""``detops ui``: browse runs, metrics, artifacts and registered models in the MLflow UI."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import typer

from detops.errors import DetopsError


def _wait_ready(url: str, proc: subprocess.Popen[bytes], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DetopsError(f"detops ui: mlflow server exited with code {proc.returncode} (port in use?)")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise DetopsError(f"detops ui: no answer from {url} within {timeout:.0f} s")


def ui(
    port: int = typer.Option(5000, "--port", help="Port to serve the UI on (loopback)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the UI to come up."),
) -> None:
    """Start the MLflow UI on the configured tracking store and print its URL (Ctrl-C stops it).

    With a remote tracking server (DETOPS_MLFLOW_TRACKING_URI=http...), prints that server's URL."""
    from detops.server_process import server_group
    from detops.settings import get_settings
    from detops.tracking.ui import ensure_store_dir, is_remote, server_env, ui_command

    settings = get_settings()
    if is_remote(settings):
        typer.echo(f"MLflow UI: {settings.mlflow_tracking_uri} (the tracking server serves it)")
        return
    if not 0 < port < 65536:
        raise DetopsError(f"--port: must be 1..65535, got {port}")
    ensure_store_dir(settings)
    url = f"http://{host}:{port}"
    # the server's workers are its children: the whole group is stopped when this command ends
    with server_group(ui_command(settings, host=host, port=port), env=server_env()) as proc:
        try:
            _wait_ready(url, proc, timeout=timeout)
            typer.echo(f"MLflow UI: {url}  (store {settings.mlflow_tracking_uri}; Ctrl-C to stop)")
            proc.wait()
        except KeyboardInterrupt:
            pass


def register(app: typer.Typer) -> None:
    """Add ``ui`` to the root app."""
    app.command("ui")(ui)


RUN_ID_HELP = (
    "MLflow run (id or training run directory) to log the results into; default: the run recorded "
    "in the source's run directory, when tracking is on."
)


def _logged(run_id: str | None) -> None:
    if run_id is not None:
        typer.echo(f"logged to MLflow run {run_id}", err=True)


def log_export(
    source: str | Path, *, run_id: str | None, path: str | Path, opset: int, errors: dict[str, float]
) -> None:
    """`detops export`: ``detops.tracking.stages.log_export``, then which run it went to (stderr)."""
    from detops.tracking import stages

    _logged(stages.log_export(source, run_id=run_id, path=path, opset=opset, errors=errors))


def log_profile(artifact: str | Path, *, run_id: str | None, result: dict[str, Any]) -> None:
    """`detops profile`: ``detops.tracking.stages.log_profile``, then which run it went to (stderr)."""
    from detops.tracking import stages

    _logged(stages.log_profile(artifact, run_id=run_id, result=result))


def log_evaluation(artifact: str | Path, *, run_id: str | None, stats: dict[str, Any]) -> None:
    """`detops evaluate ARTIFACT`: ``detops.tracking.stages.log_evaluation``, then the run (stderr)."""
    from detops.tracking import stages

    _logged(stages.log_evaluation(artifact, run_id=run_id, stats=stats))
