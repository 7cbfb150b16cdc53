"""`detops train --track` against a real `mlflow server --app-name basic-auth` on loopback.

One training run (tiny row, 2 epochs) feeds every check: what the run holds (params, tags, dataset
input, step/epoch/final metrics, system metrics, artifacts byte for byte), logging into it later
(`log_to_run`), resuming into the same run, and the security contract: credentials come from the
settings, never appear in anything logged, and a client without them is refused.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detops.cli import main
from detops.engine.inference import evaluate_checkpoint
from detops.errors import DetopsError
from detops.settings import Settings, get_settings
from detops.tracking import log_to_run, resolve_run_id
from tests import servers

SECRET = servers.AUTH_ADMIN_PASSWORD
TRAIN = ["--epochs", "2", "--img-size", "64", "--batch-size", "4", "--workers", "0", "--no-augment"]


@pytest.fixture(scope="module")
def tracked(
    mlflow_auth_server: servers.MlflowServer,
    synth_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """Train once with tracking on, credentials only in DETOPS_* settings; keep what was printed
    and logged for the secret grep."""
    import subprocess

    project = tmp_path_factory.mktemp("project")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args], cwd=project, check=True
        )
    out = project / "run"
    handler_records: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_records.append(self.format(record))

    keep = _Keep(level=logging.DEBUG)
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(keep)
    root_logger.setLevel(logging.DEBUG)
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
            mp.delenv(key, raising=False)
        mp.setenv("DETOPS_PROJECT_ROOT", str(project))
        mp.setenv("DETOPS_MLFLOW_TRACKING_URI", mlflow_auth_server.url)
        mp.setenv("DETOPS_MLFLOW_TRACKING_USERNAME", servers.AUTH_ADMIN_USER)
        mp.setenv("DETOPS_MLFLOW_TRACKING_PASSWORD", SECRET)
        # MLflow samples, waits one interval, then publishes only if the run is still RUNNING: the
        # tiny training lasts a few seconds, so sample often enough to publish before it ends
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
        get_settings.cache_clear()
        import io
        from contextlib import redirect_stderr, redirect_stdout

        buf_out, buf_err = io.StringIO(), io.StringIO()
        try:
            with redirect_stdout(buf_out), redirect_stderr(buf_err):
                code = main(
                    [
                        "train",
                        "damo_yolo_tiny",
                        "--data",
                        str(synth_root),
                        "--out",
                        str(out),
                        *TRAIN,
                        "--track",
                    ]
                )
            env_after = {
                k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
            }
        finally:
            root_logger.removeHandler(keep)
            root_logger.setLevel(old_level)
            get_settings.cache_clear()
    assert code == 0, buf_err.getvalue()
    yield {
        "server": mlflow_auth_server,
        "project": project,
        "out": out,
        "stdout": buf_out.getvalue(),
        "stderr": buf_err.getvalue(),
        "logs": "\n".join(handler_records),
        "env_after": env_after,
        "run_id": resolve_run_id(out),
    }


@pytest.fixture
def admin(tracked: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """An MlflowClient authenticated as the admin (credentials set for this test only)."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", servers.AUTH_ADMIN_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    return MlflowClient(tracking_uri=tracked["server"].url)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_holds_config_provenance_and_metrics(tracked: dict[str, Any], admin: Any) -> None:
    out, run_id = tracked["out"], tracked["run_id"]
    assert f"tracked: MLflow run {run_id}" in tracked["stdout"]
    run = admin.get_run(run_id)
    assert run.info.status == "FINISHED"

    config = json.loads((out / "config.json").read_text())
    expected = {k: str(v) for k, v in config.items() if k not in ("recipe", "world_size", "reinitialised")}
    assert run.data.params == expected

    import subprocess

    head = subprocess.run(
        ["git", "-C", str(tracked["project"]), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tags = run.data.tags
    assert tags["detops.git_commit"] == head and tags["detops.git_dirty"] == "false"
    assert tags["detops.variant"] == "damo_yolo_tiny"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == tags["detops.dataset_digest"]
    assert json.loads(dataset_input.dataset.source)["uri"] == str(Path(config["data"]).resolve())
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"

    # Per-epoch metrics equal metrics.jsonl; one step metric per optimizer step.
    history = _jsonl(out / "metrics.jsonl")
    for key in ("val/AP", "train/loss", "train/lr"):
        logged = sorted((m.step, m.value) for m in admin.get_metric_history(run_id, key))
        assert logged == [(h["epoch"], pytest.approx(h[key])) for h in history], key
    steps = admin.get_metric_history(run_id, "step/loss")
    assert sorted(m.step for m in steps) == [1, 2, 3, 4]  # 8 images / batch 4 = 2 steps x 2 epochs
    assert len(admin.get_metric_history(run_id, "step/lr")) == 4

    # The 12 final statistics and per-class AP of best.pt, held against the engine's own evaluation.
    reference = evaluate_checkpoint(out / "best.pt", data_root=config["data"], split="val", batch_size=8)
    metrics = run.data.metrics
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"):
        assert metrics[f"final/{name}"] == pytest.approx(reference[name], abs=1e-9), name
    per_class = {k: v for k, v in reference["per_class"].items() if v is not None}
    assert {
        k.removeprefix("final/AP_class/"): v for k, v in metrics.items() if k.startswith("final/AP_class/")
    } == (pytest.approx(per_class, abs=1e-9))
    assert any(k.startswith("system/cpu_utilization") for k in metrics), sorted(metrics)


def test_artifacts_round_trip(tracked: dict[str, Any], admin: Any, tmp_path: Path) -> None:
    local = Path(admin.download_artifacts(tracked["run_id"], "", str(tmp_path)))
    out = tracked["out"]
    assert (local / "checkpoints" / "best.pt").read_bytes() == (out / "best.pt").read_bytes()
    for name in ("config.json", "metrics.jsonl", "summary.json", "final_eval.json"):
        assert (local / name).read_bytes() == (out / name).read_bytes(), name
    for plot in ("loss.png", "map.png", "pr_iou50.png", "class_ap.png"):
        assert (local / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    final = json.loads((local / "final_eval.json").read_text())
    assert len(final["pr_recall"]) == len(final["pr_precision"])


def test_log_to_run_adds_to_the_training_run(
    tracked: dict[str, Any], admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, out = tracked["run_id"], tracked["out"]
    settings = Settings(
        mlflow_tracking_uri=tracked["server"].url,
        mlflow_tracking_username=servers.AUTH_ADMIN_USER,
        mlflow_tracking_password=SECRET,
    )
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    report = tmp_path / "profile.json"
    report.write_text('{"median_ms": 1.5}')
    log_to_run(
        resolve_run_id(out),
        metrics={"onnx/AP": 0.25},
        params={"export.opset": 17},
        tags={"export.parity": "ok"},
        artifacts=[report],
        artifact_dir="deploy",
        settings=settings,
    )
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ  # restored after use
    with pytest.raises(DetopsError, match=run_id):  # no credentials: refused, one-line error
        log_to_run(run_id, metrics={"x": 1.0}, settings=Settings(mlflow_tracking_uri=tracked["server"].url))
    with pytest.raises(DetopsError, match="export.opset"):  # params are immutable
        log_to_run(run_id, params={"export.opset": 18}, settings=settings)

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", servers.AUTH_ADMIN_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    run = admin.get_run(run_id)
    assert run.data.metrics["onnx/AP"] == 0.25 and run.data.params["export.opset"] == "17"
    assert run.data.tags["export.parity"] == "ok"
    got = Path(admin.download_artifacts(run_id, "deploy/profile.json", str(tmp_path / "dl")))
    assert got.read_text() == report.read_text()


def test_credentials_never_logged(tracked: dict[str, Any], admin: Any, tmp_path: Path) -> None:
    """Every param, tag, metric key, dataset field, artifact byte, run-dir file, printed line and log
    record is free of the password (and of its basic-auth header form)."""
    forms = [SECRET, base64.b64encode(f"{servers.AUTH_ADMIN_USER}:{SECRET}".encode()).decode()]
    run = admin.get_run(tracked["run_id"])
    texts: dict[str, str] = {
        "params": json.dumps(run.data.params),
        "tags": json.dumps(run.data.tags),
        "metric keys": json.dumps(sorted(run.data.metrics)),
        "inputs": repr(run.inputs),
        "stdout": tracked["stdout"],
        "stderr": tracked["stderr"],
        "logs": tracked["logs"],
    }
    experiment = admin.get_experiment(run.info.experiment_id)
    texts["experiment"] = repr(experiment)
    blobs: dict[str, bytes] = {}
    local = Path(admin.download_artifacts(tracked["run_id"], "", str(tmp_path)))
    files = [p for p in local.rglob("*") if p.is_file()] + [
        p for p in tracked["out"].rglob("*") if p.is_file()
    ]
    assert len(files) > 10
    for path in files:
        blobs[str(path)] = path.read_bytes()
    assert tracked["logs"], "no log records captured: the grep would be vacuous"
    for form in forms:
        for where, text in texts.items():
            assert form not in text, f"secret found in {where}"
        for where, blob in blobs.items():
            assert form.encode() not in blob, f"secret found in {where}"
    # The credentials left the environment with the run.
    assert tracked["env_after"] == {"MLFLOW_TRACKING_USERNAME": None, "MLFLOW_TRACKING_PASSWORD": None}


def test_unauthenticated_and_wrong_password_are_refused(
    tracked: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    client = MlflowClient(tracking_uri=tracked["server"].url)
    with pytest.raises(MlflowException, match="401|Unauthorized|unauthorized|credentials"):
        client.get_run(tracked["run_id"])
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", servers.AUTH_ADMIN_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(MlflowException, match="401|Unauthorized|unauthorized|credentials"):
        client.get_run(tracked["run_id"])


def test_a_flow_task_registers_and_promotes_with_the_settings_credentials(
    tracked: dict[str, Any], synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a worker's register and promote tasks do: the library called with settings alone (no
    client, nothing in MLflow's own variables). With the right password the training run is found,
    registered and promoted; with a wrong one the error is one line naming the refusal, not "no such
    run", and carries no password."""
    from detops.deploy.exporting import export_artifact
    from detops.registry.promote import promote
    from detops.registry.register import register_run

    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    name = f"detops-auth-{tmp_path.name[-8:]}"
    monkeypatch.setattr("detops.registry.client.model_name", lambda variant: name)
    monkeypatch.setattr("detops.registry.promote.model_name", lambda variant: name)
    report, _ = export_artifact(tracked["out"] / "best.pt", out=tmp_path / "model.onnx")
    deployed = {
        "onnx": str(report.path),
        "evaluations": {"ort": {"AP": 0.5, "reference": {"AP": 0.5}}},
        "profiles": {"ort": {"model": {"median_ms": 5.0}, "end_to_end": {"median_ms": 6.0}}},
    }

    def settings(password: str) -> Settings:
        return Settings(
            project_root=tracked["project"],
            home=tmp_path / "home",
            mlflow_tracking_uri=tracked["server"].url,
            mlflow_tracking_username=servers.AUTH_ADMIN_USER,
            mlflow_tracking_password=password,
        )

    with pytest.raises(DetopsError) as refused:
        register_run(
            tracked["run_id"], settings=settings("not-the-password"), deployed=deployed, data_valid=True
        )
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and "401" in message and "no MLflow run" not in message
    assert SECRET not in message and "not-the-password" not in message

    reg = register_run(tracked["run_id"], settings=settings(SECRET), deployed=deployed, data_valid=True)
    assert (reg.model, reg.version, reg.run_id) == (name, 1, tracked["run_id"])
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_URI", tracked["server"].url)
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_USERNAME", servers.AUTH_ADMIN_USER)
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_PASSWORD", SECRET)
    get_settings.cache_clear()
    try:
        decision = promote("damo_yolo_tiny", version=reg.version)  # the process settings, no client
    finally:
        get_settings.cache_clear()
    assert decision.decision == "promoted", [(g.name, g.detail) for g in decision.gates]
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ  # only while the registry was in use


@pytest.mark.slow
def test_resume_continues_the_same_run(
    tracked: dict[str, Any], admin: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last in this module: it adds a third epoch to the shared run."""
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tracked["project"]))
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_URI", tracked["server"].url)
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_USERNAME", servers.AUTH_ADMIN_USER)
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_PASSWORD", SECRET)
    get_settings.cache_clear()
    try:
        code = main(["train", "--resume", str(tracked["out"]), "--epochs", "3", "--track"])
    finally:
        get_settings.cache_clear()
    assert code == 0, capsys.readouterr().err
    assert resolve_run_id(tracked["out"]) == tracked["run_id"]
    epochs = sorted(m.step for m in admin.get_metric_history(tracked["run_id"], "val/AP"))
    assert epochs == [1, 2, 3]
    assert admin.get_run(tracked["run_id"]).info.status == "FINISHED"
