from pathlib import Path

import pytest

from detops.settings import Settings


def test_embedded_defaults_live_under_project_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.project_root == tmp_path.resolve()
    assert s.home == tmp_path.resolve() / ".detops"
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path.resolve() / '.detops' / 'mlflow.db'}"
    assert s.dvc_remote == "local"
    assert s.dvc_local_remote == tmp_path.resolve() / ".detops" / "dvc-remote"


def test_environment_overrides_and_s3_url(tmp_path, monkeypatch):
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("DETOPS_DVC_REMOTE", "s3")
    monkeypatch.setenv("DETOPS_S3_BUCKET", "team-data")
    monkeypatch.setenv("DETOPS_S3_PREFIX", "/datasets/coco/")
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    s = Settings()
    assert s.dvc_remote == "s3"
    assert s.s3_url == "s3://team-data/datasets/coco"
    assert s.mlflow_tracking_uri == "http://127.0.0.1:5000"


def test_credentials_never_appear_in_repr_or_dump(tmp_path, monkeypatch):
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("DETOPS_AWS_SECRET_ACCESS_KEY", "very-secret-value")
    s = Settings()
    assert s.aws_secret_access_key is not None
    assert s.aws_secret_access_key.get_secret_value() == "very-secret-value"
    assert "very-secret-value" not in repr(s)
    assert "very-secret-value" not in str(s.model_dump())
    assert "very-secret-value" not in s.model_dump_json()


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    Path(".env").write_text("DETOPS_S3_ENDPOINT_URL=http://127.0.0.1:9000\n")
    assert Settings().s3_endpoint_url == "http://127.0.0.1:9000"


def test_unknown_remote_kind_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("DETOPS_DVC_REMOTE", "ftp")
    with pytest.raises(ValueError, match="dvc_remote"):
        Settings()
