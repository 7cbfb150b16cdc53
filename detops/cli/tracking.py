"""``detops ui``: browse runs, metrics, artifacts and registered models in the MLflow UI."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
    proc.terminate()
    raise DetopsError(f"detops ui: no answer from {url} within {timeout:.0f} s")


def ui(
    port: int = typer.Option(5000, "--port", help="Port to serve the UI on (loopback)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the UI to come up."),
) -> None:
    """Start the MLflow UI on the configured tracking store and print its URL (Ctrl-C stops it).

    With a remote tracking server (DETOPS_MLFLOW_TRACKING_URI=http...), prints that server's URL."""
    from detops.settings import get_settings
    from detops.tracking.ui import ensure_store_dir, is_remote, ui_command

    settings = get_settings()
    if is_remote(settings):
        typer.echo(f"MLflow UI: {settings.mlflow_tracking_uri} (the tracking server serves it)")
        return
    if not 0 < port < 65536:
        raise DetopsError(f"--port: must be 1..65535, got {port}")
    ensure_store_dir(settings)
    url = f"http://{host}:{port}"
    proc = subprocess.Popen(ui_command(settings, host=host, port=port))
    try:
        _wait_ready(url, proc, timeout=timeout)
        typer.echo(f"MLflow UI: {url}  (store {settings.mlflow_tracking_uri}; Ctrl-C to stop)")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def register(app: typer.Typer) -> None:
    """Add ``ui`` to the root app."""
    app.command("ui")(ui)


@contextmanager
def training_tracker(track: bool | None) -> Iterator[list[Any]]:
    """The callbacks ``detops train`` passes to the engine: an ``MlflowCallback`` on rank 0 when
    ``track`` (default: the settings' ``track``) is on, else none. On success it prints the run id."""
    from detops.settings import get_settings

    settings = get_settings()
    on = settings.track if track is None else track
    if not on or int(os.environ.get("RANK", "0")) != 0:
        yield []
        return
    from detops.tracking import MlflowCallback

    with MlflowCallback(settings=settings) as tracker:
        yield [tracker]
    if tracker.run_id:
        typer.echo(f"tracked: MLflow run {tracker.run_id} (browse with `detops ui`)")
