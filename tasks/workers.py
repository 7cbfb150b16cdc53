"""Whether a work pool has an online worker (decides TensorRT dispatch)."""

from __future__ import annotations


def pool_has_worker(pool: str) -> tuple[bool, str]:
    """``(True, detail)`` when the configured Prefect API knows pool ``pool`` and one of its workers
    is ``ONLINE``; otherwise ``(False, why)``. Never raises for a missing pool."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(work_pool_name=pool)
        except ObjectNotFound:
            return False, f"no work pool named {pool!r} on this Prefect API"
        workers = client.read_workers_for_work_pool(work_pool_name=pool)
    online = [w for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"]
    if not online:
        return False, f"work pool {pool!r} has no online worker"
    return True, f"{len(online)} online worker(s) in pool {pool!r}"
