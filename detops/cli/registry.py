"""`detops register`, `detops promote`, `detops select` and `detops report`: the model registry."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from detops.errors import DetopsError


def register_cmd(
    run: str = typer.Argument(None, help="A training run directory or its MLflow run id (or use --weights)."),
    weights: Path = typer.Option(
        None,
        "--weights",
        help="An official release file to register instead of a run (with --variant, --data).",
    ),
    variant: str = typer.Option(None, "--variant", help="The release file's variant, e.g. damo_yolo_t."),
    data: Path = typer.Option(None, "--data", help="Dataset to evaluate the release file's artifact on."),
    profile_seconds: float = typer.Option(1.5, "--profile-seconds", help="Timed seconds per profile."),
) -> None:
    """Export the run's best checkpoint (or an imported release file) to ONNX, evaluate it against the
    checkpoint on the val split, profile it on ONNX Runtime and OpenVINO, and register it as a new
    version of detops-<variant> with every figure as a tag."""
    from detops.cli import _validate as check
    from detops.logs import setup_logging
    from detops.registry.register import register_run, register_weights
    from detops.settings import get_settings

    if profile_seconds <= 0:
        raise DetopsError(f"--profile-seconds must be > 0, got {profile_seconds}")
    if (run is None) == (weights is None):
        raise DetopsError(
            "register takes a RUN or --weights FILE --variant V --data ROOT, not both or neither"
        )
    if weights is not None and (variant is None or data is None):
        raise DetopsError("register --weights needs --variant V and --data ROOT")
    if weights is None and (variant is not None or data is not None):
        raise DetopsError("--variant and --data go with --weights (a run knows its variant and data)")
    setup_logging()  # one line per stage; other libraries' INFO lines (MLflow's store set-up) off
    settings = get_settings()
    if weights is not None:
        check.variant(variant, "--variant")
        reg = register_weights(
            weights, variant=variant, data_root=data, settings=settings, profile_seconds=profile_seconds
        )
    else:
        reg = register_run(run, settings=settings, profile_seconds=profile_seconds)
    t = reg.tags
    typer.echo(
        f"registered {reg.model} version {reg.version} ({t.get('detops.source', 'trained')}): "
        f"mAP checkpoint {t['detops.map.checkpoint']}, ONNX (ort) {t.get('detops.map.ort', '')}; "
        f"median ms ort {float(t.get('detops.latency_ms.ort', 'nan')):.2f}"
    )
    typer.echo(f"promote it with: detops promote {reg.tags['detops.variant']} --version {reg.version}")


def promote_cmd(
    variant: str = typer.Argument(..., help="Variant, e.g. damo_yolo_t (model detops-<variant>)."),
    policy: Path = typer.Option(None, "--policy", help="Policy file (.toml/.yaml); default: built-in."),
    version: int = typer.Option(None, "--version", help="Version to judge (default: the newest)."),
    rollback_: bool = typer.Option(False, "--rollback", help="Restore the previous champion instead."),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
) -> None:
    """Move the 'champion' alias to a version only if every gate passes (exit 1 otherwise; 'challenger'
    then points at the newest candidate that is not champion); or, with --rollback, restore the
    previous champion. Both are audited in MLflow."""
    from detops.logs import setup_logging
    from detops.registry.policy import load_policy
    from detops.registry.promote import promote, rollback

    setup_logging()  # other libraries' INFO lines (MLflow's store set-up) off the console

    if rollback_ and (policy is not None or version is not None):
        raise DetopsError("--rollback takes neither --policy nor --version")
    if version is not None and version < 1:
        raise DetopsError(f"--version must be >= 1, got {version}")
    loaded = None if rollback_ else load_policy(policy)
    decision = rollback(variant) if rollback_ else promote(variant, policy=loaded, version=version)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": decision.model,
                    "version": decision.version,
                    "action": decision.action,
                    "decision": decision.decision,
                    "previous_champion": decision.previous_champion,
                    "champion": decision.champion,
                    "challenger": decision.challenger,
                    "audit_run_id": decision.audit_run_id,
                    "gates": [g.__dict__ for g in decision.gates],
                },
                indent=2,
            )
        )
    else:
        for g in decision.gates:
            typer.echo(f"  {'PASS' if g.passed else 'FAIL'}  {g.name:<14} {g.detail}")
        typer.echo(
            f"{decision.model} v{decision.version}: {decision.decision}; champion "
            f"{_v(decision.previous_champion)} -> {_v(decision.champion)}, challenger {_v(decision.challenger)} "
            f"(audit run {decision.audit_run_id})"
        )
    if not decision.passed:
        raise typer.Exit(1)


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def select_cmd(
    latency_budget_ms: float = typer.Option(..., "--latency-budget-ms", help="Latency budget in ms."),
    backend: str = typer.Option(..., "--backend", help="ort | openvino | tensorrt"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The best-mAP champion within the latency budget on a backend, and the Pareto front of all
    champions (mAP of the deployed artifact against its median latency)."""
    from detops.logs import setup_logging
    from detops.registry.policy import BACKENDS
    from detops.registry.select import select

    setup_logging()

    if backend not in BACKENDS:
        raise DetopsError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not latency_budget_ms > 0:
        raise DetopsError(f"--latency-budget-ms must be > 0, got {latency_budget_ms}")
    sel = select(budget_ms=latency_budget_ms, backend=backend)
    if as_json:
        typer.echo(json.dumps(sel.to_dict(), indent=2))
    else:
        if sel.best is None:
            typer.echo(f"no champion measured on {backend} fits {latency_budget_ms:g} ms")
        else:
            b = sel.best
            typer.echo(
                f"best within {latency_budget_ms:g} ms on {backend}: {b.name}@v{b.version} "
                f"(mAP {b.map:.4f}, {b.latency_ms:.2f} ms)"
            )
        typer.echo("Pareto front (fastest first):")
        for p in sel.front:
            typer.echo(f"  {p.name}@v{p.version}  mAP {p.map:.4f}  {p.latency_ms:.2f} ms")
        if sel.unmeasured:
            typer.echo("not measured on " + backend + ": " + ", ".join(sel.unmeasured))
    if sel.best is None:
        raise typer.Exit(1)


def report_cmd(
    out: Path = typer.Option(None, "--out", help="Output directory (default: <home>/report)."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log the report to MLflow."),
) -> None:
    """The comparison table (measured beside published) from the registry as Markdown and HTML, a
    Pareto chart PNG, all logged to MLflow; prints the Markdown table."""
    from detops.logs import setup_logging
    from detops.registry.report import write_report
    from detops.settings import get_settings

    setup_logging()

    settings = get_settings()
    out_dir = out or Path(settings.home) / "report"
    if out_dir.exists() and not out_dir.is_dir():
        raise DetopsError(
            f"--out {out_dir}: exists and is not a directory (the report writes four files into it)"
        )
    result = write_report(out_dir, log=not no_log)
    typer.echo(result["markdown"])
    typer.echo("wrote " + ", ".join(result["files"]))


def register(app: typer.Typer) -> None:
    """Add the registry commands to the top-level app."""
    app.command("register")(register_cmd)
    app.command("promote")(promote_cmd)
    app.command("select")(select_cmd)
    app.command("report")(report_cmd)
