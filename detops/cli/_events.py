"""Tell a configured Prefect API that a dataset version was pushed (the ``retrain-on-new-data`` trigger).

Prefect is optional here and imported only when an API is configured (``DETOPS_PREFECT_API_URL`` or
``PREFECT_API_URL``); the library below the CLI never imports it.
"""

from __future__ import annotations

import os
from typing import Any

DATASET_VERSIONED = "detops.dataset.versioned"


def dataset_event(*, md5: str, files: int, remote: str | None, root: str) -> dict[str, Any]:
    """The event ``detops data version --push`` emits: name, resource (``detops.dataset.<md5>``) and
    payload (``md5``, ``files``, ``remote``, ``root``) as keyword arguments of ``emit_event``."""
    return {
        "event": DATASET_VERSIONED,
        "resource": {"prefect.resource.id": f"detops.dataset.{md5}", "prefect.resource.name": root},
        "payload": {"md5": md5, "files": files, "remote": remote, "root": root},
    }


def emit_dataset_versioned(*, md5: str, files: int, remote: str | None, root: str, api_url: str) -> bool:
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
        sent = emit_event(**dataset_event(md5=md5, files=files, remote=remote, root=root))
        EventsWorker.drain_all()
    return sent is not None
