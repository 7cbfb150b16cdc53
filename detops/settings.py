"""Typed settings for every endpoint the platform talks to.

Values come from (highest first) ``DETOPS_*`` environment variables, a ``.env`` file in the project
root, and the embedded defaults below, which need no server at all: a SQLite MLflow store and a local
DVC remote under ``<project root>/.detops/``, and Prefect's local ephemeral API. Credentials are
``SecretStr`` so that printing or logging the settings never shows them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The project directory: ``$DETOPS_PROJECT_ROOT``, else the nearest ancestor of the working
    directory holding ``.dvc`` or ``.git``, else the working directory itself."""
    env = os.environ.get("DETOPS_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if (candidate / ".dvc").is_dir() or (candidate / ".git").exists():
            return candidate
    return cwd


class Settings(BaseSettings):
    """All endpoints and locations; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(env_prefix="DETOPS_", env_file=".env", extra="ignore")

    project_root: Path = Path()
    home: Path = Path()
    """State directory (MLflow store, local DVC remote, run outputs); default ``<root>/.detops``."""

    mlflow_tracking_uri: str = ""
    """Default: ``sqlite:///<home>/mlflow.db``."""
    track: bool = True
    """Log ``detops train`` runs to MLflow unless ``--no-track`` (the test suite sets it false)."""
    mlflow_tracking_username: SecretStr | None = None
    mlflow_tracking_password: SecretStr | None = None
    """Basic-auth credentials of a remote tracking server; handed to MLflow only in-process, around
    client use (``detops.tracking.credentials``), never logged."""
    prefect_api_url: str = ""
    """Empty: Prefect's local ephemeral API."""

    dvc_remote: Literal["local", "s3"] = "local"
    dvc_local_remote: Path = Path()
    """Default: ``<home>/dvc-remote``."""
    s3_bucket: str = "detops-data"
    s3_prefix: str = "dvc"
    s3_endpoint_url: str = ""
    """Any S3-compatible endpoint (MinIO, moto); empty means AWS."""
    s3_region: str = "us-east-1"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if self.project_root == Path():
            self.project_root = project_root()
        if self.home == Path():
            self.home = self.project_root / ".detops"
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{self.home / 'mlflow.db'}"
        if self.dvc_local_remote == Path():
            self.dvc_local_remote = self.home / "dvc-remote"
        return self

    @property
    def s3_url(self) -> str:
        """``s3://bucket/prefix`` of the S3 DVC remote."""
        return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests build ``Settings(...)`` directly instead)."""
    return Settings()
