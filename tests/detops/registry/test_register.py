"""End to end on a real ``mlflow server``: train a tiny variant for one epoch, register the run, promote
it, resolve its registry URI to the ONNX file, select it and report it. Slow (training, export,
evaluation and profiling on two backends)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from detops.registry import tags as T
from detops.registry.client import CHALLENGER, CHAMPION, RegistryClient, model_name

pytestmark = pytest.mark.slow

VARIANT = "damo_yolo_tiny"


@pytest.fixture(scope="module")
def tiny_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detops.engine.fit import fit

    base = tmp_path_factory.mktemp("register")
    data = base / "data"
    shutil.copytree(synth_root, data)
    out = base / "run"
    fit(
        VARIANT,
        data_root=data,
        epochs=1,
        out_dir=out,
        img_size=128,
        batch_size=4,
        workers=0,
        overrides={"progress": False},
    )
    return out


def test_register_promote_resolve_select_report(tiny_run: Path, mlflow_server: Any, tmp_path: Path) -> None:
    from detops.deploy.artifact import read_onnx_metadata
    from detops.registry.promote import promote
    from detops.registry.register import register_run
    from detops.registry.report import write_report
    from detops.registry.select import select
    from detops.registry.uri import resolve_model_uri
    from detops.settings import Settings

    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=mlflow_server.url)
    client = RegistryClient(tracking_uri=mlflow_server.url)
    reg = register_run(tiny_run, settings=settings, client=client, profile_seconds=0.2)
    name = model_name(VARIANT)
    assert reg.model == name
    tags = client.get_version(name, reg.version).tags
    for key in (
        T.DATASET_VERSION,
        T.GIT_COMMIT,
        T.RUN_ID,
        T.MAP_CHECKPOINT,
        T.map_tag("ort"),
        T.map_tag("openvino"),
        T.latency_tag("ort"),
        T.latency_tag("openvino"),
        T.latency_env_tag("ort"),
        T.PARAMS,
        T.GFLOPS,
        T.EXPORT_PARITY,
    ):
        assert tags.get(key), key
    assert tags[T.DATA_VALID] == "true"
    assert json.loads(tags[T.EXPORT_PARITY])["passed"] is True
    assert float(tags[T.latency_tag("ort")]) > 0 and int(tags[T.PARAMS]) > 0
    assert json.loads(tags[T.latency_env_tag("ort")])["input_size"] == 128
    # the version's model is the pyfunc detector, logged with MLflow 3's model logging (signature and
    # input example), with the ONNX file among its files
    model_dir = client.download_version(name, reg.version, tmp_path / "dl")
    mlmodel = (model_dir / "MLmodel").read_text() if (model_dir / "MLmodel").is_file() else ""
    mlmodel = mlmodel or next(model_dir.rglob("MLmodel")).read_text()
    assert "signature:" in mlmodel and "input_example" in mlmodel and "python_function" in mlmodel
    # logged as code (models from code), not as a pickled object
    assert "DetectorModel()" in next(model_dir.rglob("detector_model.py")).read_text()
    assert not list(model_dir.rglob("python_model.pkl"))
    assert len(list(model_dir.rglob("*.onnx"))) == 1
    # the run directory now points at the MLflow run that holds the model
    assert (tiny_run / "mlflow_run_id").read_text().strip() == reg.run_id
    # registered, not yet judged: the new version is challenger
    assert client.alias_version(name, CHALLENGER) == reg.version

    decision = promote(VARIANT, client=client)  # default policy
    assert decision.decision == "promoted" and client.alias_version(name, CHAMPION) == reg.version
    assert client.alias_version(name, CHALLENGER) != reg.version  # the promoted version lost challenger

    onnx_path = resolve_model_uri(f"models:/{name}@champion", settings=settings)
    assert onnx_path.suffix == ".onnx" and read_onnx_metadata(onnx_path).variant == VARIANT
    assert resolve_model_uri(f"models:/{name}/{reg.version}", settings=settings) == onnx_path
    ckpt = resolve_model_uri(f"models:/{name}@champion", want="checkpoint", settings=settings)
    assert ckpt == tiny_run / "best.pt"

    sel = select(budget_ms=1e6, backend="ort", client=client)
    assert sel.best is not None and any(p.name == name for p in sel.front)

    result = write_report(tmp_path / "report", client=client)
    assert f"{VARIANT} (v{reg.version} champion)" in result["markdown"]
    assert all(Path(f).is_file() for f in result["files"]) and result["run_id"]


def test_cli_promote_and_evaluate_a_registry_uri(tiny_run: Path, mlflow_server: Any, tmp_path: Path) -> None:
    """The console script against the same server: promote --json, then evaluate models:/...@champion."""
    env = {
        **os.environ,
        "DETOPS_MLFLOW_TRACKING_URI": mlflow_server.url,
        "DETOPS_HOME": str(tmp_path / "home"),
        "DETOPS_PROJECT_ROOT": str(tmp_path),
        "DETOPS_TRACK": "0",
    }
    detops = [sys.executable, "-m", "detops.cli"]
    client = RegistryClient(tracking_uri=mlflow_server.url)
    name = model_name(VARIANT)
    if client.alias_version(name, CHAMPION) is None:
        pytest.skip("needs the registration of the previous test")
    data = json.loads((tiny_run / "config.json").read_text())["data"]
    proc = subprocess.run(
        [*detops, "evaluate", f"models:/{name}@champion", "--data", data, "--backend", "ort", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "AP" in json.loads(proc.stdout)
    bad = subprocess.run(
        [*detops, "promote", VARIANT, "--policy", str(tmp_path / "missing.toml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: policy file not found")
