"""`detops deploy`'s tag concurrency limits against a real Prefect server (the session's): created,
updated, and, with ``fresh``, cleared of a slot that a killed process left taken."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from detops.cli.orchestrate import ensure_tag_limits
from tests import servers


@pytest.fixture(scope="module")
def prefect_api(prefect_server: servers.PrefectServer) -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api}):
        yield


def _train_limit() -> tuple[int, int]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("tag:train")
    return limit.limit, limit.active_slots


def _take_a_slot_and_vanish() -> None:
    """Occupy one ``train`` slot the way a task run does, then never release it (a SIGKILL)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.increment_concurrency_slots_with_lease(
            names=["tag:train"], slots=1, mode="concurrency", lease_duration=3600
        )


def test_limits_are_created_updated_and_freshened(prefect_api: None) -> None:
    ensure_tag_limits({"train": 1, "tensorrt": 1})
    assert _train_limit() == (1, 0)
    ensure_tag_limits({"train": 2})
    assert _train_limit() == (2, 0)

    _take_a_slot_and_vanish()
    ensure_tag_limits({"train": 1})
    assert _train_limit() == (1, 1)  # a plain update keeps the abandoned slot taken
    ensure_tag_limits({"train": 1}, fresh=True)
    assert _train_limit() == (1, 0)
