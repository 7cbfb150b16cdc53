"""Fast checks of prefect.yaml against the flows and the event the CLI emits (no server)."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from detops.cli import _events

REPO = Path(__file__).resolve().parents[2]


def _deployments() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in config["deployments"]}


def _flow(entrypoint: str) -> Any:
    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def test_every_deployment_names_a_flow_and_valid_parameters() -> None:
    deployments = _deployments()
    assert set(deployments) == {
        "retrain-nightly",
        "retrain-on-new-data",
        "train-gpu",
        "benchmark-t4",
        "promote",
    }
    for name, d in deployments.items():
        flow = _flow(d["entrypoint"])
        params = set(inspect.signature(flow.fn).parameters)
        given = set(d.get("parameters") or {})
        for trigger in d.get("triggers") or []:
            given |= set(trigger.get("parameters") or {})
        assert given <= params, f"{name}: unknown parameters {given - params}"
    assert deployments["benchmark-t4"]["work_pool"]["name"] == "t4"
    assert {
        deployments[n]["work_pool"]["name"] for n in ("retrain-nightly", "retrain-on-new-data", "promote")
    } == {"cpu"}
    assert deployments["retrain-nightly"]["schedules"][0]["cron"] == "0 2 * * *"


def test_the_trigger_matches_the_event_the_cli_emits() -> None:
    (trigger,) = _deployments()["retrain-on-new-data"]["triggers"]
    event = _events.dataset_event(version="0123abcd" * 4, files=12, remote="s3://b/p")
    assert event["event"] in trigger["expect"]
    pattern = trigger["match"]["prefect.resource.id"]
    assert fnmatch.fnmatch(event["resource"]["prefect.resource.id"], pattern)
    assert not fnmatch.fnmatch("detops.model.0123abcd", pattern)
    # the trigger passes the version, never a path of the machine that pushed it
    assert trigger["parameters"] == {"dataset_version": "{{ event.payload.version }}"}
    assert event["payload"] == {"version": "0123abcd" * 4, "remote": "s3://b/p", "files": 12}
    assert "retrain" in _deployments()["retrain-on-new-data"]["entrypoint"]
    import inspect

    from flows.retrain import retrain

    assert "dataset_version" in inspect.signature(retrain.fn).parameters


def test_no_event_without_a_prefect_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert _events.emit_dataset_versioned(version="m", files=1, remote=None, api_url="") is False


def test_detops_deploy_creates_the_pools_with_their_templates() -> None:
    from detops.cli.orchestrate import pool_commands

    cpu, gpu, t4 = pool_commands(t4_type="kubernetes")
    assert cpu[:5] == ["work-pool", "create", "cpu", "--type", "process"]
    assert gpu[:5] == ["work-pool", "create", "gpu", "--type", "kubernetes"]
    assert t4[:5] == ["work-pool", "create", "t4", "--type", "kubernetes"]
    for cmd in (cpu, gpu, t4):
        assert (REPO / cmd[cmd.index("--base-job-template") + 1]).is_file()
    assert t4[t4.index("--base-job-template") + 1].endswith("t4-kubernetes.json")
    assert gpu[gpu.index("--base-job-template") + 1].endswith("gpu-kubernetes.json")
    assert "--concurrency-limit" not in gpu
    (_, process_gpu, process_t4) = pool_commands(t4_type="process", gpu_type="process", gpu_limit=2)
    assert "--base-job-template" not in process_t4  # a test pool on one machine: Prefect's defaults
    assert process_gpu[process_gpu.index("--base-job-template") + 1].endswith("gpu-process.json")
    assert process_gpu[process_gpu.index("--concurrency-limit") + 1] == "2"


def test_train_gpu_deployment_runs_the_train_flow_on_the_gpu_pool() -> None:
    import inspect

    from flows.train import train_variant

    train_gpu = _deployments()["train-gpu"]
    assert train_gpu["entrypoint"] == "flows/train.py:train_variant"
    assert train_gpu["work_pool"]["name"] == "gpu" and train_gpu["work_pool"]["job_variables"] == {"gpus": 1}
    params = inspect.signature(train_variant.fn).parameters
    assert {"variant", "dataset", "preset", "gpus"} <= set(params) and params["gpus"].default == 1


def test_detops_deploy_refuses_an_unknown_pool_type() -> None:
    from detops.cli import main

    assert main(["deploy", "--t4-type", "slurm"]) == 2
    assert main(["deploy", "--gpu-type", "slurm"]) == 2


def test_the_crashed_run_automation_marks_silent_runs_crashed() -> None:
    from prefect.client.schemas.objects import StateType

    from detops.cli.orchestrate import AUTOMATIONS, load_automations

    (crashed,) = load_automations(REPO / AUTOMATIONS)
    trigger = crashed.trigger
    assert str(trigger.posture.value) == "Proactive"
    assert trigger.after == {"prefect.flow-run.heartbeat"} and trigger.for_each == {"prefect.resource.id"}
    # longer than a few heartbeats of the workers' frequency, so one late heartbeat is no crash
    for name in (
        "cpu-process.json",
        "gpu-kubernetes.json",
        "gpu-docker.json",
        "t4-kubernetes.json",
        "t4-docker.json",
    ):
        template = json.loads((REPO / "infra" / "prefect" / name).read_text())
        frequency = int(
            template["variables"]["properties"]["env"]["default"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]
        )
        assert trigger.within.total_seconds() >= 3 * frequency, name
    (action,) = crashed.actions
    assert action.state == StateType.CRASHED
    assert load_automations(REPO / AUTOMATIONS, within=70)[0].trigger.within.total_seconds() == 70


def test_an_invalid_automation_file_names_the_file_and_field(tmp_path: Path) -> None:
    from detops.cli.orchestrate import AUTOMATIONS, load_automations
    from detops.errors import DetopsError

    spec = yaml.safe_load((REPO / AUTOMATIONS).read_text())
    spec["automations"][0]["trigger"]["posture"] = "Sideways"
    bad = tmp_path / "automations.yaml"
    bad.write_text(yaml.safe_dump(spec))
    with pytest.raises(
        DetopsError, match=r"automations\.yaml: automation 'detops-crashed-flow-runs': .*posture"
    ):
        load_automations(bad)
    bad.write_text("automations: {name: x}\n")
    with pytest.raises(DetopsError, match="must be a list of named automations"):
        load_automations(bad)


def test_tag_limits_bound_trainings_per_cpu_worker_and_builds_per_gpu() -> None:
    from detops.cli.orchestrate import tag_limits
    from detops.errors import DetopsError

    assert tag_limits() == {"train": 1, "tensorrt": 1}
    assert tag_limits(cpu_workers=3, gpus=2) == {"train": 3, "tensorrt": 2}
    with pytest.raises(DetopsError, match="--cpu-workers"):
        tag_limits(cpu_workers=0)
    # the tasks carry those tags; the t4 dispatch does not (it waits for the benchmark's own task)
    from tasks.deploy import dispatch_tensorrt
    from tasks.registry import benchmark_version
    from tasks.train import train

    assert "train" in train.tags and "tensorrt" in benchmark_version.tags
    assert "tensorrt" not in dispatch_tensorrt.tags


def test_workers_run_their_own_checkout_not_the_deployers() -> None:
    """The pull step reads DETOPS_CODE_DIR where the flow run starts (not a path of the machine that
    ran `prefect deploy`), and every pool template sets it: the image's checkout, or the process
    worker's own directory."""
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (step,) = config["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $DETOPS_CODE_DIR }}"}
    }
    expected = {
        "cpu-process.json": ".",
        "gpu-process.json": ".",
        "gpu-kubernetes.json": "/opt/detops",
        "gpu-docker.json": "/opt/detops",
        "t4-kubernetes.json": "/opt/detops",
        "t4-docker.json": "/opt/detops",
    }
    for name, directory in expected.items():
        template = json.loads((REPO / "infra" / "prefect" / name).read_text())
        assert template["variables"]["properties"]["env"]["default"]["DETOPS_CODE_DIR"] == directory, name
