"""Tracking-server credentials from settings, visible to MLflow only while a client is in use.

MLflow reads ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` from the environment on every
request to a tracking server. ``tracking_env`` sets them from the settings' secret strings for the
duration of a ``with`` block, in this process only, and puts back whatever was there before. The
values are never passed to a logger, a tag, a param or a file.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from detops.settings import Settings

USERNAME_VAR = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VAR = "MLFLOW_TRACKING_PASSWORD"
# the ``user:password@`` of a URL (``scheme://user:password@host/...``), wherever it is in a text
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def without_userinfo(text: str) -> str:
    """``text`` with every URL's ``user:password@`` part removed: for a tracking URI in a message,
    and for an exception's message that may quote one (MLflow's request errors do)."""
    return _USERINFO.sub("", text)


# MLflow prints each run it ends as "View run NAME at: URL", the URL built from the tracking URI
LINKS_OFF_VAR = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def keep_credentials_off_stdout(uri: str) -> None:
    """For a tracking URI with a ``user:password@`` part, turn MLflow's run links off in this
    process: they would print the password. (Credentials given as settings are sent as headers and
    never appear in a URL, so the links stay.)"""
    if without_userinfo(uri) != uri:
        os.environ[LINKS_OFF_VAR] = "true"


def credential_env(settings: Settings) -> dict[str, str]:
    """The MLflow environment variables the settings' credentials map to (empty when unset)."""
    env: dict[str, str] = {}
    if settings.mlflow_tracking_username is not None:
        env[USERNAME_VAR] = settings.mlflow_tracking_username.get_secret_value()
    if settings.mlflow_tracking_password is not None:
        env[PASSWORD_VAR] = settings.mlflow_tracking_password.get_secret_value()
    return env


# Open ``tracking_env`` blocks of this process and what the variables held before the first of them.
# A flow maps registry tasks over worker threads: blocks overlap, and one ending must not take the
# credentials from under another (a restore per block would, and the other's requests would go out
# unauthenticated).
_lock = threading.Lock()
_open = {"blocks": 0}
_before: dict[str, str | None] = {}


@contextmanager
def tracking_env(settings: Settings) -> Iterator[str]:
    """Within the block, MLflow authenticates with the settings' credentials; yields the tracking URI.

    Only the variables the settings define are touched. Blocks may nest and overlap across threads:
    each sets the variables on entry, and what was there before the first is put back (or removed)
    when the last open block ends."""
    keep_credentials_off_stdout(settings.mlflow_tracking_uri)
    env = credential_env(settings)
    with _lock:
        for key in env:
            _before.setdefault(key, os.environ.get(key))
        os.environ.update(env)
        _open["blocks"] += 1
    try:
        yield settings.mlflow_tracking_uri
    finally:
        with _lock:
            _open["blocks"] -= 1
            if _open["blocks"] == 0:
                for key, value in _before.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                _before.clear()
