"""On a local store, the registry client keeps audit and registration artifacts under the settings'
home (``<home>/mlartifacts``), as training runs do, never in the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_audit_and_runs_write_under_home_not_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detops.registry.client import RegistryClient
    from detops.settings import get_settings

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("DETOPS_HOME", str(home))
    get_settings.cache_clear()
    try:
        client = RegistryClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        audit_id = client.write_audit({"action": "promote", "model": "detops-x", "version": 1})
        run_id = client.create_run(experiment="detops-register", run_name="r", tags={})
        for rid in (audit_id, run_id):
            uri = client._client.get_run(rid).info.artifact_uri
            assert uri.startswith((home / "mlartifacts").resolve().as_uri()), uri
    finally:
        get_settings.cache_clear()
    assert list(cwd.iterdir()) == [], "nothing may be written to the working directory"
