"""Tracking-server credentials from settings, visible to MLflow only while a client is in use.

MLflow reads ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` from the environment on every
request to a tracking server. ``tracking_env`` sets them from the settings' secret strings for the
duration of a ``with`` block, in this process only, and puts back whatever was there before. The
values are never passed to a logger, a tag, a param or a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from detops.settings import Settings

USERNAME_VAR = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VAR = "MLFLOW_TRACKING_PASSWORD"


def credential_env(settings: Settings) -> dict[str, str]:
    """The MLflow environment variables the settings' credentials map to (empty when unset)."""
    env: dict[str, str] = {}
    if settings.mlflow_tracking_username is not None:
        env[USERNAME_VAR] = settings.mlflow_tracking_username.get_secret_value()
    if settings.mlflow_tracking_password is not None:
        env[PASSWORD_VAR] = settings.mlflow_tracking_password.get_secret_value()
    return env


@contextmanager
def tracking_env(settings: Settings) -> Iterator[str]:
    """Within the block, MLflow authenticates with the settings' credentials; yields the tracking URI.

    Only the variables the settings define are touched; on exit each is restored (or removed)."""
    env = credential_env(settings)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield settings.mlflow_tracking_uri
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
