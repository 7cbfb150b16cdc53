"""Integration: an MLflow server on PostgreSQL 15 (run by the test as the postgres user) with an S3
artifact store (moto's server), and the MLflow UI in headless Chromium showing a registered model's
`champion` alias and its metrics."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from detops.settings import Settings
from detops.tracking import log_to_run
from detops.tracking.runs import ensure_experiment
from tests import servers

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"  # tests/artifacts/, git-ignored


@pytest.mark.slow
def test_postgres_backend_with_s3_artifacts(
    postgres_server: servers.PostgresServer,
    moto_s3: servers.MotoS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    import psycopg2
    from mlflow import MlflowClient

    bucket = f"mlflow-{uuid.uuid4().hex[:8]}"
    s3_env = {
        "MLFLOW_S3_ENDPOINT_URL": moto_s3.url,
        "AWS_ACCESS_KEY_ID": servers.S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3.url,
        aws_access_key_id=servers.S3_ACCESS_KEY,
        aws_secret_access_key=servers.S3_SECRET_KEY,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    db_uri = postgres_server.create_database(f"mlflow_{uuid.uuid4().hex[:8]}")
    assert db_uri.startswith("postgresql+psycopg2://")
    # Clients write artifacts straight to S3 (no proxy): both sides need the endpoint and keys.
    server = servers.start_mlflow_server(
        root=tmp_path / "server",
        backend_uri=db_uri,
        artifacts=f"s3://{bucket}/mlflow",
        serve_artifacts=False,
        env=s3_env,
    )
    try:
        for key, value in s3_env.items():
            monkeypatch.setenv(key, value)
        settings = Settings(project_root=tmp_path, mlflow_tracking_uri=server.url)
        client = MlflowClient(tracking_uri=server.url)
        run = client.create_run(ensure_experiment("pg-s3", settings=settings))
        run_id = run.info.run_id
        report = tmp_path / "report.json"
        report.write_text('{"AP": 0.5}')
        log_to_run(
            run_id,
            metrics={"val/AP": 0.5},
            params={"variant": "damo_yolo_t"},
            artifacts=[report],
            artifact_dir="reports",
            settings=settings,
        )
        got = client.get_run(run_id)
        assert got.data.metrics["val/AP"] == 0.5 and got.data.params["variant"] == "damo_yolo_t"
        assert got.info.artifact_uri.startswith(f"s3://{bucket}/mlflow/")
        back = Path(client.download_artifacts(run_id, "reports/report.json", str(tmp_path / "dl")))
        assert back.read_text() == report.read_text()
        # The bytes live in the S3 bucket and the run in PostgreSQL.
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert any(k.endswith(f"{run_id}/artifacts/reports/report.json") for k in keys), keys
        conn = psycopg2.connect(
            host="127.0.0.1", port=postgres_server.port, user="postgres", dbname=db_uri.rsplit("/", 1)[1]
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT value FROM metrics WHERE run_uuid = %s AND key = 'val/AP'", (run_id,))
                assert cur.fetchall() == [(0.5,)]
        finally:
            conn.close()
    finally:
        server.stop()


@pytest.mark.slow
def test_mlflow_ui_shows_champion_alias_and_metrics(
    mlflow_server: servers.MlflowServer, chromium: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    tag = uuid.uuid4().hex[:8]
    run = client.create_run(client.create_experiment(f"ui-{tag}"))
    run_id = run.info.run_id
    client.log_metric(run_id, "map_50_95", 0.4321)
    client.set_terminated(run_id)
    name = f"detops-uitest-{tag}"
    client.create_registered_model(name)
    version = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id).version
    client.set_model_version_tag(name, version, "map_50_95", "0.4321")
    client.set_registered_model_alias(name, "champion", version)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    chromium.get(f"{mlflow_server.url}/#/models/{name}")
    text = servers.wait_text(chromium, [name, "champion"])
    assert f"Version {version}" in text or f"v{version}" in text or str(version) in text
    shot = ARTIFACTS / "mlflow_ui_model.png"
    chromium.save_screenshot(str(shot))
    print(f"screenshot: {shot}")

    chromium.get(f"{mlflow_server.url}/#/models/{name}/versions/{version}")
    servers.wait_text(chromium, ["champion", "map_50_95", "0.4321"])
    shot = ARTIFACTS / "mlflow_ui_model_version.png"
    chromium.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
