"""The ``promote`` flow: judge given registry versions under a policy, then publish the report."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.registry import promote, report


@flow(name="promote")
def promote_versions(
    versions: dict[str, int],
    policy: dict[str, Any] | None = None,
    latency_budget_ms: float | None = None,
) -> list[dict[str, Any]]:
    """Promote each of ``versions`` ({variant: registry version}) whose gates all pass under
    ``policy`` (flat policy fields) and ``latency_budget_ms``; publish the comparison report."""
    decisions = [
        promote({"variant": variant, "version": version}, policy=policy, latency_budget_ms=latency_budget_ms)
        for variant, version in versions.items()
    ]
    report(decisions)
    return decisions
