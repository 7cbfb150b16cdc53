"""Serving a champion for real (slow): register a tiny DAMO-YOLO run on a real ``mlflow server``, promote
it, start ``mlflow models serve -m models:/detops-<variant>@champion --env-manager local`` on loopback,
POST encoded images to ``/invocations`` and compare with ``detops predict`` on the same files. The
``detops serve`` command line is checked without a server (fast)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from detops.errors import DetopsError
from tests import servers
from tests.detops.deploy.conftest import make_checkpoint

VARIANT = "damo_yolo_tiny"


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.slow
def test_champion_served_over_http_answers_like_detops_predict(
    mlflow_server: Any, synth_root: Path, tmp_path: Path
) -> None:
    from detops.registry.client import CHAMPION, RegistryClient, model_name
    from detops.registry.policy import Policy
    from detops.registry.promote import promote
    from detops.registry.register import register_run
    from detops.settings import Settings

    # a run directory as `detops train` leaves it (seeded random weights: detections without training)
    run = tmp_path / "run"
    make_checkpoint(run / "best.pt", VARIANT, data_root=synth_root)
    (run / "config.json").write_text(json.dumps({"variant": VARIANT, "data": str(synth_root)}))
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=mlflow_server.url)
    client = RegistryClient(tracking_uri=mlflow_server.url)
    reg = register_run(run, settings=settings, client=client, backends=("ort",), profile_seconds=0.2)
    # another test of the session may have a champion of this model already: judge on this run alone
    decision = promote(VARIANT, version=reg.version, policy=Policy(map_tolerance=1.0), client=client)
    name = model_name(VARIANT)
    assert decision.decision == "promoted" and client.alias_version(name, CHAMPION) == reg.version

    files = sorted((synth_root / "val").iterdir())
    env = {
        **os.environ,
        "DETOPS_MLFLOW_TRACKING_URI": mlflow_server.url,
        "DETOPS_HOME": str(tmp_path / "home"),
        "DETOPS_PROJECT_ROOT": str(tmp_path),
        "DETOPS_TRACK": "0",
    }
    uri = f"models:/{name}@champion"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "detops.cli",
            "predict",
            uri,
            *map(str, files),
            "--out",
            str(tmp_path / "pred"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    coco = json.loads((tmp_path / "pred" / "detections.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    expected = [[a for a in coco["annotations"] if a["image_id"] == im["id"]] for im in coco["images"]]

    server = servers.start_model_server(uri, tracking_uri=mlflow_server.url)
    try:
        images = [base64.b64encode(p.read_bytes()).decode("ascii") for p in files]
        status, answer = _post(
            server.url,
            {
                "dataframe_split": {"columns": ["image"], "data": [[b] for b in images]},
                "params": {"score": 0.3},
            },
        )
        assert status == 200, answer
        rows = answer["predictions"]
        from tests.detops.registry.test_pyfunc import assert_rows_match_predict

        assert_rows_match_predict(rows, expected, names)

        # one bad entry is answered in its row; the good one beside it still gets its detections
        status, answer = _post(
            server.url,
            {"dataframe_split": {"columns": ["image"], "data": [["bm90IGFuIGltYWdl"], [images[0]]]}},
        )
        assert status == 200, answer
        bad, good = answer["predictions"]
        assert bad["error"].startswith("row 0: ") and bad["boxes"] == []
        assert good["error"] is None and good["scores"] == rows[0]["scores"]

        # params: a higher threshold keeps fewer; an unknown backend is a 4xx naming the param
        status, answer = _post(
            server.url,
            {"dataframe_split": {"columns": ["image"], "data": [[images[0]]]}, "params": {"score": 0.5}},
        )
        assert status == 200 and all(s >= 0.5 for s in answer["predictions"][0]["scores"])
        assert len(answer["predictions"][0]["scores"]) < len(rows[0]["scores"])
        status, answer = _post(
            server.url,
            {"dataframe_split": {"columns": ["image"], "data": [[images[0]]]}, "params": {"backend": "x"}},
        )
        assert 400 <= status < 500 and "backend" in json.dumps(answer)
    finally:
        server.stop()


def test_serve_command_line() -> None:
    """`detops serve VARIANT` serves the champion of detops-VARIANT with MLflow's own server, from this
    Python environment, on the settings' registry and credentials."""
    from pydantic import SecretStr

    from detops.registry.serve import serve_command, serve_env, served_uri
    from detops.settings import Settings

    assert served_uri("damo_yolo_t") == "models:/detops-damo_yolo_t@champion"
    assert served_uri("models:/detops-rtdetrv2_s/3") == "models:/detops-rtdetrv2_s/3"
    assert served_uri("runs:/abc/model") == "runs:/abc/model"
    with pytest.raises(DetopsError, match="neither a variant"):
        served_uri("no_such_variant")
    with pytest.raises(DetopsError, match="registry URI"):
        served_uri("models:/detops-x@")
    assert serve_command("models:/detops-damo_yolo_t@champion", port=8080) == [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        "models:/detops-damo_yolo_t@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
        "--workers",
        "1",
    ]
    with pytest.raises(DetopsError, match="--port"):
        serve_command("models:/detops-x@champion", port=0)
    settings = Settings(
        mlflow_tracking_uri="http://127.0.0.1:5999",
        mlflow_tracking_username=SecretStr("alice"),
        mlflow_tracking_password=SecretStr("s3cret"),
    )
    env = serve_env(settings, base={"PATH": "/bin", "MLFLOW_TRACKING_URI": "sqlite:///elsewhere.db"})
    assert env == {
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}/bin",  # MLflow runs uvicorn from PATH
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5999",
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "s3cret",
    }


def test_serve_cli_refuses_a_bad_target(capsys: pytest.CaptureFixture[str]) -> None:
    from detops.cli import main

    assert main(["serve", "no_such_variant"]) == 2
    assert capsys.readouterr().err.startswith("error: serve: 'no_such_variant' is neither a variant")


def test_run_server_stops_the_whole_server_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM to `detops serve` stops the server and its children (uvicorn under MLflow), not only the
    process it started; the exit code is 0."""
    import signal
    import time

    import detops

    pidfile = tmp_path / "grandchild.pid"
    server = (
        "import pathlib, subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        f"pathlib.Path({str(pidfile)!r}).write_text(str(c.pid)); time.sleep(120)"
    )
    harness = (
        "import os, sys; from detops.registry.serve import run_server; "
        f"sys.exit(run_server([sys.executable, '-c', {server!r}], env=os.environ, stop_timeout=5))"
    )
    checkout = Path(detops.__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", harness], cwd=checkout)
    deadline = time.monotonic() + 60
    while not pidfile.is_file() or not pidfile.read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    grandchild = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while Path(f"/proc/{grandchild}").exists() and "Z" not in _state(grandchild):
        assert time.monotonic() < deadline, "the server's child outlived detops serve"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"
