"""`detops deploy`: create the work pools, the tag concurrency limits and the automations, and register
the deployments of ``prefect.yaml``."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from detops.errors import DetopsError

POOL_TEMPLATES: dict[str, dict[str, str]] = {
    "cpu": {"process": "infra/prefect/cpu-process.json"},
    "gpu": {
        "kubernetes": "infra/prefect/gpu-kubernetes.json",
        "docker": "infra/prefect/gpu-docker.json",
        "process": "infra/prefect/gpu-process.json",
    },
    "t4": {"kubernetes": "infra/prefect/t4-kubernetes.json", "docker": "infra/prefect/t4-docker.json"},
}

AUTOMATIONS = "infra/prefect/automations.yaml"


def tag_limits(*, cpu_workers: int = 1, gpus: int = 1) -> dict[str, int]:
    """Task-tag concurrency limits: one training per CPU worker (tag ``train``), one TensorRT build
    per GPU (tag ``tensorrt``)."""
    if cpu_workers < 1 or gpus < 1:
        raise DetopsError(f"--cpu-workers and --gpus must be at least 1, got {cpu_workers} and {gpus}")
    return {"train": cpu_workers, "tensorrt": gpus}


def ensure_tag_limits(limits: dict[str, int], *, fresh: bool = False) -> None:
    """Create or update the tag concurrency limits ``limits`` on the configured Prefect API. With
    ``fresh``, each limit is deleted first, freeing slots that a killed process may have left taken
    (for an API this process owns: Prefect's ephemeral server does not expire abandoned slots)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for tag, limit in limits.items():
            if fresh:
                with contextlib.suppress(ObjectNotFound):
                    client.delete_concurrency_limit_by_tag(tag)
            client.create_concurrency_limit(tag=tag, concurrency_limit=limit)


def load_automations(path: Path, *, within: float | None = None) -> list[Any]:
    """The automations of ``path`` (an ``automations:`` list, as ``prefect automation create`` reads
    it) as Prefect ``AutomationCore`` objects; ``within`` overrides each trigger's window in seconds (for a
    test that cannot wait minutes). ``DetopsError`` naming the file and automation when one is invalid."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore
    from pydantic import ValidationError

    specs = (yaml.safe_load(path.read_text()) or {}).get("automations")
    if not isinstance(specs, list) or not all(isinstance(s, dict) and s.get("name") for s in specs):
        raise DetopsError(f"{path}: automations must be a list of named automations")
    out = []
    for spec in specs:
        if within is not None:
            spec = {**spec, "trigger": {**spec["trigger"], "within": within}}
        try:
            out.append(AutomationCore.model_validate(spec))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise DetopsError(f"{path}: automation {spec['name']!r}: {where}: {first['msg']}") from None
    return out


def apply_automations(automations: list[Any]) -> list[str]:
    """Create each Prefect ``AutomationCore`` of ``automations`` on the configured API, or update the one of
    the same name, so that deploying twice leaves one of each; returns ``"<name>: created|updated"``."""
    from prefect.client.orchestration import get_client

    done = []
    with get_client(sync_client=True) as client:
        for automation in automations:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                done.append(f"{automation.name}: updated")
            else:
                client.create_automation(automation)
                done.append(f"{automation.name}: created")
    return done


def register(app: typer.Typer) -> None:
    """Add the `deploy` command to the root app."""
    app.command("deploy")(deploy_cmd)


def pool_commands(
    *, t4_type: str, gpu_type: str = "kubernetes", templates: bool = True, gpu_limit: int | None = None
) -> list[list[str]]:
    """The ``prefect`` argument lists that create (or update) the ``cpu``, ``gpu`` and ``t4`` pools;
    ``gpu_type`` and ``t4_type`` are kubernetes, docker, or process (one host, or a single-machine test).
    ``gpu_limit``: the ``gpu`` pool's concurrency limit (trainings at once across its workers)."""
    for option, kind in (("--t4-type", t4_type), ("--gpu-type", gpu_type)):
        if kind not in ("kubernetes", "docker", "process"):
            raise DetopsError(f"{option} must be kubernetes, docker or process, got {kind!r}")
    out = []
    for pool, kind in (("cpu", "process"), ("gpu", gpu_type), ("t4", t4_type)):
        cmd = ["work-pool", "create", pool, "--type", kind, "--overwrite"]
        template = POOL_TEMPLATES[pool].get(kind)
        if templates and template:
            cmd += ["--base-job-template", template]
        if pool == "gpu" and gpu_limit is not None:
            cmd += ["--concurrency-limit", str(gpu_limit)]
        out.append(cmd)
    return out


def deploy_cmd(
    t4_type: str = typer.Option(
        "kubernetes", "--t4-type", help="Worker type of the t4 pool: kubernetes, docker or process."
    ),
    gpu_type: str = typer.Option(
        "kubernetes",
        "--gpu-type",
        help="Worker type of the gpu (training) pool: kubernetes, docker or process.",
    ),
    gpu_trainings: int = typer.Option(
        None,
        "--gpu-trainings",
        help="Trainings at once on the gpu pool (its concurrency limit; default none).",
    ),
    templates: bool = typer.Option(
        True, "--templates/--no-templates", help="Use the base job templates in infra/prefect/."
    ),
    cpu_workers: int = typer.Option(1, help="CPU workers: trainings at once ('train' tag limit)."),
    gpus: int = typer.Option(1, help="GPUs in the t4 pool: TensorRT builds at once ('tensorrt' tag limit)."),
) -> None:
    """Create the 'cpu', 'gpu' and 't4' work pools, the 'train' and 'tensorrt' tag concurrency limits and the
    crashed-run automation, and register prefect.yaml's deployments on the configured Prefect server
    (PREFECT_API_URL); run it from the repository root."""
    from detops.settings import get_settings

    limits = tag_limits(cpu_workers=cpu_workers, gpus=gpus)
    root = get_settings().project_root
    if not (root / "prefect.yaml").is_file():
        raise DetopsError(f"{root / 'prefect.yaml'}: not found; run `detops deploy` from the repository root")
    automations = load_automations(root / AUTOMATIONS)
    if gpu_trainings is not None and gpu_trainings < 1:
        raise DetopsError(f"--gpu-trainings must be at least 1, got {gpu_trainings}")
    pools = pool_commands(t4_type=t4_type, gpu_type=gpu_type, templates=templates, gpu_limit=gpu_trainings)
    for args in [*pools, ["deploy", "--all"]]:
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=root, capture_output=True, text=True
        )
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise DetopsError(f"prefect {' '.join(args[:3])}: {last}", exit_code=1)
        typer.echo(f"prefect {' '.join(args[:3])}: ok")
    ensure_tag_limits(limits)
    typer.echo("concurrency limits: " + ", ".join(f"{tag}={n}" for tag, n in limits.items()))
    for line in apply_automations(automations):
        typer.echo(f"automation {line}")
