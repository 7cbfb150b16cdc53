"""Fixtures of the tracking tests."""

from __future__ import annotations

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
