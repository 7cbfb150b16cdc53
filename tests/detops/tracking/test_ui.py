"""`detops ui` for real: serves the embedded SQLite store, prints its URL, shows what runs logged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from detops.settings import Settings
from detops.tracking import log_to_run
from detops.tracking.runs import ensure_experiment
from tests import servers


@pytest.mark.slow
def test_ui_serves_the_local_store_and_prints_its_url(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    settings = Settings(project_root=tmp_path)
    experiment = ensure_experiment("detops-ui-check", settings=settings)
    run_id = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).create_run(experiment).info.run_id
    note = tmp_path / "note.txt"
    note.write_text("hello")
    log_to_run(run_id, metrics={"val/AP": 0.125}, artifacts=[note], settings=settings)
    assert (tmp_path / ".detops" / "mlartifacts").is_dir()  # artifacts under home, not the cwd

    port = servers.free_port()
    env = {**os.environ, "DETOPS_PROJECT_ROOT": str(tmp_path)}
    env.pop("DETOPS_MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "detops.cli", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        line = ""
        while time.monotonic() < deadline and "MLflow UI:" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        url = f"http://127.0.0.1:{port}"
        assert line.startswith(f"MLflow UI: {url}"), line
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=30) as resp:
            run = json.load(resp)["run"]
        assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"val/AP": 0.125}
        listing = f"{url}/api/2.0/mlflow/artifacts/list?run_id={run_id}"
        with urllib.request.urlopen(listing, timeout=30) as resp:
            assert [f["path"] for f in json.load(resp)["files"]] == ["note.txt"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    # the MLflow server (a session of its own) went with `detops ui`
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/health", timeout=5)
