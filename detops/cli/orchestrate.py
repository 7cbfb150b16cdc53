"""`detops deploy`: create the work pools and register the deployments of ``prefect.yaml``."""

from __future__ import annotations

import subprocess
import sys

import typer

from detops.errors import DetopsError

POOL_TEMPLATES: dict[str, dict[str, str]] = {
    "cpu": {"process": "infra/prefect/cpu-process.json"},
    "t4": {"kubernetes": "infra/prefect/t4-kubernetes.json", "docker": "infra/prefect/t4-docker.json"},
}


def register(app: typer.Typer) -> None:
    """Add the `deploy` command to the root app."""
    app.command("deploy")(deploy_cmd)


def pool_commands(*, t4_type: str, templates: bool = True) -> list[list[str]]:
    """The ``prefect`` argument lists that create (or update) the ``cpu`` and ``t4`` pools; the ``t4``
    pool is ``t4_type`` (kubernetes, docker, or process for a single-machine test)."""
    if t4_type not in ("kubernetes", "docker", "process"):
        raise DetopsError(f"--t4-type must be kubernetes, docker or process, got {t4_type!r}")
    out = []
    for pool, kind in (("cpu", "process"), ("t4", t4_type)):
        cmd = ["work-pool", "create", pool, "--type", kind, "--overwrite"]
        template = POOL_TEMPLATES[pool].get(kind)
        if templates and template:
            cmd += ["--base-job-template", template]
        out.append(cmd)
    return out


def deploy_cmd(
    t4_type: str = typer.Option(
        "kubernetes", "--t4-type", help="Worker type of the t4 pool: kubernetes, docker or process."
    ),
    templates: bool = typer.Option(
        True, "--templates/--no-templates", help="Use the base job templates in infra/prefect/."
    ),
) -> None:
    """Create the `cpu` and `t4` work pools and register prefect.yaml's deployments on the configured
    Prefect server (PREFECT_API_URL); run it from the repository root."""
    from detops.settings import get_settings

    root = get_settings().project_root
    if not (root / "prefect.yaml").is_file():
        raise DetopsError(f"{root / 'prefect.yaml'}: not found; run `detops deploy` from the repository root")
    for args in [*pool_commands(t4_type=t4_type, templates=templates), ["deploy", "--all"]]:
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=root, capture_output=True, text=True
        )
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise DetopsError(f"prefect {' '.join(args[:3])}: {last}", exit_code=1)
        typer.echo(f"prefect {' '.join(args[:3])}: ok")
