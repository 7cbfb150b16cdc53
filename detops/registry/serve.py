"""``detops serve``: MLflow's own model server on a registered detector, with the settings' registry.

``mlflow models serve -m models:/detops-<variant>@champion --env-manager local`` answers
``POST /invocations`` with detections (the model is the pyfunc detector of
:mod:`detops.registry.pyfunc`). This module only builds that command line and its environment: the
settings' tracking URI (``MLFLOW_TRACKING_URI``, where ``models:/`` is resolved) and credentials, on top
of this process's environment. ``--env-manager local`` serves from this Python environment, which has
detops installed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from detops.errors import DetopsError

DEFAULT_ALIAS = "champion"


def served_uri(target: str, *, alias: str = DEFAULT_ALIAS) -> str:
    """The model URI to serve: a variant name as ``models:/detops-<variant>@<alias>``; a URI MLflow
    resolves (``models:/``, ``runs:/``, ``s3://``, ...) or a local model directory as it is."""
    import models
    from detops.registry.client import model_name

    text = str(target).strip()
    if text in models.VARIANT_TABLE:
        return f"models:/{model_name(text)}@{alias}"
    if text.startswith("models:"):
        from detops.registry.uri import parse_model_uri

        parse_model_uri(text)  # a one-line error for a malformed registry URI, before MLflow starts
        return text
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:/", text) or os.path.isdir(text):
        return text
    raise DetopsError(
        f"serve: {text!r} is neither a variant ({', '.join(models.VARIANTS)}), a model URI nor a model directory"
    )


def serve_command(uri: str, *, host: str = "127.0.0.1", port: int = 5001, workers: int = 1) -> list[str]:
    """The ``mlflow models serve`` command line for ``uri`` with this Python and its environment."""
    if not 0 < port < 65536:
        raise DetopsError(f"--port: must be 1..65535, got {port}")
    if workers < 1:
        raise DetopsError(f"--workers must be at least 1, got {workers}")
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def serve_env(settings: Any, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the settings' tracking URI and credentials
    as MLflow reads them (``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``), and this
    Python's scripts directory first on ``PATH``."""
    from detops.tracking.credentials import credential_env

    env = dict(os.environ if base is None else base)
    # MLflow starts the scoring server as `uvicorn` from PATH: this environment's, also when the venv
    # is not activated (`.venv/bin/detops serve ...`)
    scripts = os.path.dirname(sys.executable)
    path = env.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join(p for p in (scripts, path) if p)
    env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    env.update(credential_env(settings))
    return env


def served_version(uri: str, *, settings: Any) -> tuple[str, int] | None:
    """For a registry URI, ``(model name, version)`` it names now (a one-line ``DetopsError`` when the
    model, alias or version does not exist, before a server is started); ``None`` for other URIs."""
    from detops.registry.client import open_registry
    from detops.registry.uri import is_model_uri, parse_model_uri, version_of

    if not is_model_uri(uri):
        return None
    ref = parse_model_uri(uri)
    with open_registry(settings) as client:
        return ref.name, version_of(ref, client, uri)


def run_server(command: list[str], *, env: Mapping[str, str], stop_timeout: float = 15.0) -> int:
    """Run the server ``command`` until it exits, Ctrl-C or SIGTERM; returns its exit code (0 when
    stopped). The server runs in its own process group, stopped as a whole (SIGTERM, then SIGKILL
    after ``stop_timeout`` s; see :mod:`detops.server_process`): ``mlflow models serve`` starts
    uvicorn as a child, which would outlive a signal sent to MLflow's process alone."""
    from detops.server_process import server_group

    with server_group(command, env=env, stop_timeout=stop_timeout) as proc:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (server_group raises it for that too)
            return 0
