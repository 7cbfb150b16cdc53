"""Fast checks of prefect.yaml against the flows and the event the CLI emits (no server)."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
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
    assert set(deployments) == {"retrain-nightly", "retrain-on-new-data", "benchmark-t4", "promote"}
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
    event = _events.dataset_event(md5="0123abcd", files=12, remote="/r", root="/p/data")
    assert event["event"] in trigger["expect"]
    pattern = trigger["match"]["prefect.resource.id"]
    assert fnmatch.fnmatch(event["resource"]["prefect.resource.id"], pattern)
    assert not fnmatch.fnmatch("detops.model.0123abcd", pattern)
    # the trigger's templated parameter reads a payload field that the event carries
    assert trigger["parameters"]["dataset_root"] == "{{ event.payload.root }}"
    assert event["payload"]["root"] == "/p/data" and event["payload"]["md5"] == "0123abcd"


def test_no_event_without_a_prefect_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert _events.emit_dataset_versioned(md5="m", files=1, remote=None, root="/d", api_url="") is False


def test_detops_deploy_creates_both_pools_with_their_templates() -> None:
    from detops.cli.orchestrate import pool_commands

    cpu, t4 = pool_commands(t4_type="kubernetes")
    assert cpu[:5] == ["work-pool", "create", "cpu", "--type", "process"]
    assert t4[:5] == ["work-pool", "create", "t4", "--type", "kubernetes"]
    for cmd in (cpu, t4):
        assert (REPO / cmd[cmd.index("--base-job-template") + 1]).is_file()
    assert t4[t4.index("--base-job-template") + 1].endswith("t4-kubernetes.json")
    (_, process_t4) = pool_commands(t4_type="process")
    assert "--base-job-template" not in process_t4  # a test pool on one machine: Prefect's defaults


def test_detops_deploy_refuses_an_unknown_pool_type() -> None:
    from detops.cli import main

    assert main(["deploy", "--t4-type", "slurm"]) == 2
