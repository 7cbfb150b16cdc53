"""Fixtures of the tracking tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An MLflow tracking URI for one test module: the shared server of a mutation run, else a
    SQLite store of the module's own (seconds to create)."""
    from mlflow import MlflowClient

    shared = servers.shared_mlflow_server()
    if shared is not None:
        return shared.url
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the tables once
    return uri


@pytest.fixture
def process_settings_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process settings point at an unreachable server: code that ignored the settings it was
    given fails instead of writing to some other store; MLflow does not retry a refused connection."""
    from detops.settings import get_settings

    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
