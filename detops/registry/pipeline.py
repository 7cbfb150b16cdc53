"""The registry's end of the main job: register runs, promote them under a policy, print the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def register_and_promote(
    runs: dict[str, Any],
    *,
    settings: Any,
    deployed: dict[str, Any] | None = None,
    data_valid: bool | None = None,
    policy: Any = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Register each run (``{variant: fit summary}``) as a new version, promote it under ``policy``
    (default: the built-in one), write the comparison report under ``<home>/report`` and print its
    table and the command that opens the MLflow UI.

    ``deployed``: ``{variant: {"onnx", "evaluation", "profiles", ...}}`` already measured (see
    ``register_run``). Returns ``{"versions": {variant: n}, "decisions": {variant: decision},
    "report": write_report's dict}``. A rejected promotion is reported, not raised.
    """
    from detops.registry.client import open_registry
    from detops.registry.promote import promote
    from detops.registry.register import register_run
    from detops.registry.report import write_report

    versions: dict[str, int] = {}
    decisions: dict[str, str] = {}
    with open_registry(settings) as client:
        for variant, run in runs.items():
            reg = register_run(
                run["run_dir"],
                settings=settings,
                client=client,
                deployed=(deployed or {}).get(variant),
                data_valid=data_valid,
                echo=echo,
            )
            versions[variant] = reg.version
            decision = promote(variant, policy=policy, version=reg.version, client=client)
            decisions[variant] = decision.decision
            for gate in decision.gates:
                echo(f"  {'PASS' if gate.passed else 'FAIL'}  {gate.name:<14} {gate.detail}")
            echo(
                f"[promote] {decision.model} v{decision.version}: {decision.decision}; champion v{decision.champion}"
            )
        report = write_report(Path(settings.home) / "report", client=client)
    echo("")
    echo("Comparison report (registry champions beside the published figures):")
    echo(report["markdown"])
    echo(f"report files: {', '.join(report['files'])}")
    echo("Open the MLflow UI (runs, registered models, aliases, audit log) with:  detops ui")
    return {"versions": versions, "decisions": decisions, "report": report}
