"""Tell a configured Prefect API that a dataset version was pushed (the ``retrain-on-new-data`` trigger).

Prefect is optional here and imported only when an API is configured (``DETOPS_PREFECT_API_URL`` or
``PREFECT_API_URL``); the library below the CLI never imports it.
"""

from __future__ import annotations

import os
from typing import Any

DATASET_VERSIONED = "detops.dataset.versioned"


def dataset_event(*, version: str, files: int, remote: str | None) -> dict[str, Any]:
    """The event ``detops data version --push`` emits: name, resource (``detops.dataset.<version>``)
    and payload (``version``, ``remote``, ``files``) as keyword arguments of ``emit_event``. No local
    path: the flow run it triggers may run on a machine that has only the remote."""
    return {
        "event": DATASET_VERSIONED,
        "resource": {
            "prefect.resource.id": f"detops.dataset.{version}",
            "prefect.resource.name": f"dataset {version[:8]}",
        },
        "payload": {"version": version, "remote": remote, "files": files},
    }


def emit_dataset_versioned(*, version: str, files: int, remote: str | None, api_url: str) -> bool:
    """Emit ``dataset_event(...)`` to ``api_url`` (or ``PREFECT_API_URL``) and wait until it is sent.
    Returns False, sending nothing, when neither is set or Prefect is not installed."""
    url = api_url or os.environ.get("PREFECT_API_URL", "")
    if not url:
        return False
    try:
        from prefect.events import emit_event
        from prefect.events.worker import EventsWorker
        from prefect.settings import PREFECT_API_URL, temporary_settings
    except ImportError:
        return False
    with temporary_settings(updates={PREFECT_API_URL: url}):
        sent = emit_event(**dataset_event(version=version, files=files, remote=remote))
        EventsWorker.drain_all()
    return sent is not None
