"""``detops ui``: browse runs, metrics, artifacts and registered models in the MLflow UI."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
def training_tracker(track: bool | None, *, resume: bool = False) -> Iterator[list[Any]]:
    """The callbacks ``detops train`` passes to the engine: an ``MlflowCallback`` on rank 0 when
    ``track`` (default: the settings' ``track``) is on, else none; ``resume`` continues the MLflow run
    of the resumed run directory. On success it prints the run id."""
    from detops.settings import get_settings

    settings = get_settings()
    on = settings.track if track is None else track
    if not on or int(os.environ.get("RANK", "0")) != 0:
        yield []
        return
    from detops.tracking import MlflowCallback

    with MlflowCallback(settings=settings, resume=resume) as tracker:
        yield [tracker]
    if tracker.run_id:
        typer.echo(f"tracked: MLflow run {tracker.run_id} (browse with `detops ui`)")


RUN_ID_HELP = (
    "MLflow run (id or training run directory) to log the results into; default: the run recorded "
    "in the source's run directory, when tracking is on."
)


def _stem(path: str | Path) -> str:
    p = Path(path)
    return p.name if p.is_dir() else p.stem


def _logged(run_id: str | None) -> None:
    if run_id is not None:
        typer.echo(f"logged to MLflow run {run_id}", err=True)


def log_export(
    source: str | Path, *, run_id: str | None, path: str | Path, opset: int, errors: dict[str, float]
) -> None:
    """`detops export`: parity errors as ``export/<onnx stem>/max_rel_error/<output>``, the ONNX path
    and opset as tags, the report as ``export/<stem>.json``."""
    from detops.tracking.stages import flatten_numbers, log_stage

    stem = _stem(path)
    result = {"path": str(path), "opset": opset, "max_rel_error": errors}
    _logged(
        log_stage(
            source,
            run_id=run_id,
            stage="export",
            name=stem,
            metrics=flatten_numbers({"max_rel_error": errors}, prefix=f"export/{stem}"),
            result=result,
            tags={f"export.{stem}.path": str(path), f"export.{stem}.opset": opset},
        )
    )


def log_profile(artifact: str | Path, *, run_id: str | None, result: dict[str, Any]) -> None:
    """`detops profile`: ``profile/<stem>/<backend>/{model,end_to_end}/<statistic>`` metrics, the
    environment as a tag, the whole result as ``profile/<stem>-<backend>.json``."""
    from detops.tracking.stages import flatten_numbers, log_stage

    stem, backend = _stem(artifact), str(result.get("backend"))
    prefix = f"profile/{stem}/{backend}"
    metrics = {
        **flatten_numbers(result.get("model", {}), prefix=f"{prefix}/model"),
        **flatten_numbers(result.get("end_to_end", {}), prefix=f"{prefix}/end_to_end"),
    }
    env = json.dumps(result.get("environment", {}), sort_keys=True, default=str)[:5000]
    _logged(
        log_stage(
            artifact,
            run_id=run_id,
            stage="profile",
            name=f"{stem}/{backend}",
            metrics=metrics,
            result=result,
            tags={f"profile.{stem}.{backend}.environment": env},
        )
    )


def log_evaluation(artifact: str | Path, *, run_id: str | None, stats: dict[str, Any]) -> None:
    """`detops evaluate ARTIFACT`: ``eval/<stem>/<backend>/<statistic>`` (and ``.../delta/<statistic>``
    with a reference, ``.../AP_class/<class>``), the result as ``eval/<stem>-<backend>.json``."""
    from detops.evaluation import STAT_NAMES
    from detops.tracking.stages import flatten_numbers, log_stage

    stem, backend = _stem(artifact), str(stats.get("backend", "torch"))
    prefix = f"eval/{stem}/{backend}"
    values: dict[str, Any] = {k: stats[k] for k in STAT_NAMES if k in stats}
    if isinstance(stats.get("delta"), dict):
        values["delta"] = stats["delta"]
    values["AP_class"] = {k: v for k, v in (stats.get("per_class") or {}).items() if v is not None}
    _logged(
        log_stage(
            artifact,
            run_id=run_id,
            stage="eval",
            name=f"{stem}/{backend}",
            metrics=flatten_numbers(values, prefix=prefix),
            result=stats,
        )
    )
