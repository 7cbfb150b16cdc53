"""End to end through Prefect (slow): a real ``prefect server``, real process workers for the ``cpu``
and ``t4`` pools, a real MLflow server; the deployments of ``prefect.yaml`` registered with
``prefect deploy --all``; the retrain flow triggered through the API with the smoke preset on tiny
variants; the t4 dispatch, the cache on an unchanged rerun, invalid data and the event trigger."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import servers

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ["damo_yolo_tiny", "rtdetrv2_tiny"]
RUN_TIMEOUT = 1800.0


@dataclass
class Platform:
    """The running platform: ``api`` (PREFECT_API_URL), ``env`` (what workers and CLIs see), the
    project directory (git + DVC, data in ``project/data``) and the MLflow URL."""

    api: str
    env: dict[str, str]
    project: Path
    mlflow: str
    logs: Path
    workers: dict[str, subprocess.Popen[bytes]]
    """The running worker process of each pool (a test may kill one and start another)."""


def _prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", *args]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _start(cmd: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    from detops.data.synth import synthesize

    base = tmp_path_factory.mktemp("prefect-e2e")
    # its own MLflow server: the tests count versions, and the session's server holds other tests' ones
    mlflow_server = servers.start_mlflow_server(root=base / "mlflow")
    project = base / "project"
    project.mkdir()
    git = ["git", "-c", "user.name=detops-test", "-c", "user.email=test@detops.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    (project / ".gitignore").write_text("/data/\n/.detops/\n")
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], cwd=project, check=True)
    synthesize(project / "data", train=8, val=4, size=128, seed=0, progress=False)
    logs = base / "logs"
    logs.mkdir()
    workers: dict[str, subprocess.Popen[bytes]] = {}
    prefect = servers.start_prefect_server(root=base / "prefect")
    api = prefect.api
    env = {
        **prefect.env,
        "PREFECT_LOGGING_LEVEL": "INFO",
        "DETOPS_PROJECT_ROOT": str(project),
        "DETOPS_MLFLOW_TRACKING_URI": mlflow_server.url,
        "DETOPS_PREFECT_API_URL": api,
        "DETOPS_TRACK": "false",
        "OMP_NUM_THREADS": "1",
        "DETOPS_CODE_DIR": str(REPO),  # the deployments' pull step: the workers run this checkout
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",  # Prefect's minimum; the crashed-run automation
    }
    try:
        _prefect(env, "work-pool", "create", "cpu", "--type", "process")
        # a gpu pool with no worker: retrain trains in its own flow run (tests/flows/test_cluster_e2e.py
        # has the one with a worker)
        _prefect(env, "work-pool", "create", "gpu", "--type", "process")
        _prefect(
            env, "work-pool", "create", "t4", "--type", "process"
        )  # process-type here, Kubernetes in infra/
        _prefect(env, "deploy", "--all")
        _pause_nightly_schedule(api)
        _apply_automations(api)
        workers.update({pool: _start_worker(env, pool, logs) for pool in ("cpu", "t4")})
        _wait_workers(env, ("cpu", "t4"))
        yield Platform(
            api=api, env=env, project=project, mlflow=mlflow_server.url, logs=logs, workers=workers
        )
    finally:
        for proc in workers.values():
            servers._stop_process(proc)
        prefect.stop()
        mlflow_server.stop()


def _start_worker(env: dict[str, str], pool: str, logs: Path) -> subprocess.Popen[bytes]:
    n = len(list(logs.glob(f"worker-{pool}*.log")))
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    return _start(cmd, env=env, log=logs / f"worker-{pool}{f'-{n}' if n else ''}.log")


CRASH_WINDOW_S = 70.0
"""The crashed-run automation's window here (the file's is minutes): two missed 30 s heartbeats."""


def _apply_automations(api: str) -> None:
    """``detops deploy``'s automations, with a window a test can wait for."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from detops.cli.orchestrate import AUTOMATIONS, apply_automations, load_automations

    with temporary_settings(updates={PREFECT_API_URL: api}):
        assert apply_automations(load_automations(REPO / AUTOMATIONS, within=CRASH_WINDOW_S)) == [
            "detops-crashed-flow-runs: created"
        ]


def _pause_nightly_schedule(api: str) -> None:
    """Check the nightly cron is deployed, then pause it and drop its scheduled runs, so that no
    full-preset run starts while the tests run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("retrain/retrain-nightly")
        (schedule,) = nightly.schedules
        assert schedule.schedule.cron == "0 2 * * *" and schedule.active
        client.update_deployment_schedule(nightly.id, schedule.id, active=False)
        for run in client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain-nightly"]))
        ):
            client.delete_flow_run(run.id)
        trigger = client.read_deployment_by_name("retrain/retrain-on-new-data")
        assert trigger.parameters == {} or "dataset_root" not in trigger.parameters  # a version, no path


def _client(p: Platform) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Ctx:
        def __enter__(self) -> Any:
            self.settings = temporary_settings(updates={PREFECT_API_URL: p.api})
            self.settings.__enter__()
            self.client = get_client(sync_client=True)
            return self.client.__enter__()

        def __exit__(self, *exc: Any) -> None:
            self.client.__exit__(*exc)
            self.settings.__exit__(*exc)

    return _Ctx()


def _wait_workers(env: dict[str, str], pools: tuple[str, ...], timeout: float = 300) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.workers import pool_has_worker

    deadline = time.monotonic() + timeout
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        while time.monotonic() < deadline:
            if all(pool_has_worker(pool)[0] for pool in pools):
                return
            time.sleep(2)
    pytest.fail(f"workers of {pools} did not come online")


def _run(p: Platform, deployment: str, parameters: dict[str, Any]) -> Any:
    """Create a run of ``deployment`` through the API and wait until it is final."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: p.api}):
        run = run_deployment(deployment, parameters=parameters, timeout=RUN_TIMEOUT, poll_interval=5)
    assert run.state is not None and run.state.is_final(), f"{deployment}: not finished in time:\n{_logs(p)}"
    return run


def _logs(p: Platform) -> str:
    return "\n".join(f"--- {f.name}\n{servers._tail(f, 40)}" for f in sorted(p.logs.glob("*.log")))


def _task_runs(p: Platform, flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client(p) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _artifacts(p: Platform, flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with _client(p) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in arts}


def _registry(p: Platform) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=p.mlflow)


SMOKE = {"variants": VARIANTS, "preset": "smoke", "epochs": 1}


@pytest.fixture(scope="module")
def first_run(platform: Platform) -> Any:
    run = _run(platform, "retrain/retrain-nightly", SMOKE)
    assert run.state.is_completed(), f"retrain ended {run.state.type}:\n{_logs(platform)}"
    return run


def test_retrain_registers_promotes_and_reports(platform: Platform, first_run: Any) -> None:
    client = _registry(platform)
    for variant in VARIANTS:
        name = f"detops-{variant}"
        versions = client.search_model_versions(f"name='{name}'")
        assert [int(v.version) for v in versions] == [1]
        tags = versions[0].tags
        assert float(tags["detops.map.ort"]) >= 0.0 and float(tags["detops.latency_ms.ort"]) > 0.0
        assert float(tags["detops.latency_ms.openvino"]) > 0.0
        assert client.get_model_version_by_alias(name, "champion").version == "1"
    arts = _artifacts(platform, first_run.id)
    assert {"comparison-report", "promotions"} <= set(arts)
    report = arts["comparison-report"].data
    assert all(v in report for v in VARIANTS) and report.count("v1 champion") == len(VARIANTS), report
    rows = json.loads(arts["promotions"].data)
    assert {r["model"] for r in rows} == {f"detops-{v}" for v in VARIANTS}
    assert {r["decision"] for r in rows} == {"promoted"}


def test_t4_pool_runs_the_benchmark_and_reports_tensorrt_unavailable(
    platform: Platform, first_run: Any
) -> None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with _client(platform) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["benchmark-t4"]))
        )
        assert runs, "the retrain flow did not dispatch benchmark-t4"
        bench = runs[0]
        assert bench.state.is_completed(), bench.state
        assert bench.parent_task_run_id is not None  # started from the retrain flow's dispatch task
        assert bench.work_pool_name == "t4"
        assert bench.parameters["versions"] == {v: 1 for v in VARIANTS}
    arts = _artifacts(platform, bench.id)
    rows = json.loads(arts["benchmark"].data)
    statuses = {(r["variant"], r["backend"]): r["status"] for r in rows}
    for variant in VARIANTS:
        assert statuses[(variant, "tensorrt")].startswith("unavailable")
    assert "unavailable" in arts["benchmark-notes"].data


def test_prefect_ui_shows_the_runs_their_tasks_and_the_benchmark_table(
    platform: Platform, first_run: Any, chromium: Any
) -> None:
    """The Prefect UI of this server in headless Chromium, as a user opens it after the run: the
    retrain run's page with its task runs in the logs, the benchmark run on the t4 pool, and the
    `benchmark` table artifact saying why TensorRT was not measured. Screenshots: tests/artifacts/."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with _client(platform) as client:
        (bench, *_) = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["benchmark-t4"]))
        )
    ui = platform.api.removesuffix("/api")
    shots = REPO / "tests" / "artifacts"
    shots.mkdir(parents=True, exist_ok=True)
    chromium.set_window_size(1600, 1000)
    chromium.get(f"{ui}/runs/flow-run/{first_run.id}")
    text = servers.wait_text(chromium, [first_run.name, "Completed", "train-", "register-", "promote-"])
    assert "dispatch-t4" in text
    chromium.save_screenshot(str(shots / "prefect_ui_retrain_run.png"))
    chromium.get(f"{ui}/runs/flow-run/{bench.id}")
    servers.wait_text(chromium, [bench.name, "Completed", *(f"benchmark-{v}-v1" for v in VARIANTS)])
    chromium.save_screenshot(str(shots / "prefect_ui_benchmark_run.png"))
    table = _artifacts(platform, bench.id)["benchmark"]
    chromium.get(f"{ui}/artifacts/artifact/{table.id}")
    text = servers.wait_text(chromium, ["benchmark", "tensorrt", "unavailable: TensorRT is not installed"])
    assert all(v in text for v in VARIANTS)
    chromium.save_screenshot(str(shots / "prefect_ui_benchmark_table.png"))


def test_unchanged_rerun_hits_the_cache(platform: Platform, first_run: Any) -> None:
    run = _run(platform, "retrain/retrain-nightly", SMOKE)
    assert run.state.is_completed(), f"rerun ended {run.state.type}:\n{_logs(platform)}"
    by_name: dict[str, list[str]] = {}
    for tr in _task_runs(platform, run.id):
        by_name.setdefault(tr.name.rsplit("-", 1)[0], []).append(tr.state.name)
    assert by_name["train"] == ["Cached", "Cached"]
    assert by_name["register"] == ["Cached", "Cached"]
    client = _registry(platform)
    for variant in VARIANTS:
        assert [v.version for v in client.search_model_versions(f"name='detops-{variant}'")] == ["1"]


def test_invalid_data_stops_before_training_with_the_table(platform: Platform, first_run: Any) -> None:
    bad = platform.project.parent / "bad-data"
    shutil.copytree(platform.project / "data", bad)
    ann = bad / "annotations" / "instances_val.json"
    coco = json.loads(ann.read_text())
    coco["annotations"][0]["bbox"][2] = -5.0
    ann.write_text(json.dumps(coco))
    run = _run(platform, "retrain/retrain-nightly", {**SMOKE, "dataset_root": str(bad)})
    assert run.state.is_failed()
    names = {tr.name.rsplit("-", 1)[0] for tr in _task_runs(platform, run.id)}
    assert "validate-data" in names and not names & {"version-data", "train", "register"}
    table = json.loads(_artifacts(platform, run.id)["data-validation"].data)
    assert any(str(coco["annotations"][0]["id"]) in str(row["example ids"]) for row in table), table


def test_pushing_a_new_dataset_version_triggers_a_retrain(platform: Platform, first_run: Any) -> None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from detops.data.synth import synthesize

    data = platform.project / "data"
    shutil.rmtree(data)
    synthesize(data, train=8, val=4, size=128, seed=1, progress=False)
    out = subprocess.run(
        [sys.executable, "-m", "detops.cli", "data", "version", str(data), "--push", "--json"],
        cwd=platform.project,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    pushed = json.loads(out.stdout)
    assert set(pushed) == {"version", "remote", "files"} and len(pushed["version"]) == 32
    deadline = time.monotonic() + 120
    runs: list[Any] = []
    with _client(platform) as client:
        while time.monotonic() < deadline and not runs:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain-on-new-data"]))
            )
            time.sleep(2)
        assert runs, f"no run of retrain-on-new-data after the push:\n{_logs(platform)}"
        assert runs[0].parameters == {"dataset_version": pushed["version"]}
        # Its full smoke schedule is not this test's business: cancel it.
        from prefect.states import Cancelling

        client.set_flow_run_state(runs[0].id, Cancelling(), force=True)


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and every process under it, as when its machine or pod dies."""
    import psutil

    root = psutil.Process(proc.pid)
    for p in [*root.children(recursive=True), root]:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait(timeout=30)


def _epochs_logged(p: Platform, flow_run_id: Any, *, since: Any, epochs: int) -> list[int]:
    """The epochs whose end-of-epoch line the flow run logged after ``since``."""
    import re

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp

    with _client(p) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]), timestamp=LogFilterTimestamp(after_=since)
            )
        )
    found = [re.search(rf"\bepoch (\d+)/{epochs}\b", log.message) for log in logs]
    return sorted(int(m.group(1)) for m in found if m)


def _wait_state(p: Platform, flow_run_id: Any, done: Any, *, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    with _client(p) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if done(run.state):
                return run
            time.sleep(2)
    pytest.fail(f"flow run {flow_run_id} still {run.state.type} after {timeout:.0f} s:\n{_logs(p)}")


def test_a_killed_worker_s_run_is_crashed_retried_and_resumed_registering_once(
    platform: Platform, first_run: Any
) -> None:
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    variant, epochs = VARIANTS[0], 30
    registry = _registry(platform)
    before = {v.version for v in registry.search_model_versions(f"name='detops-{variant}'")}
    runs_dir = platform.project / ".detops" / "runs"
    earlier = set(runs_dir.glob(f"retrain-{variant}-*"))
    with temporary_settings(updates={PREFECT_API_URL: platform.api}):
        run = run_deployment(
            "retrain/retrain-nightly",
            parameters={"variants": [variant], "preset": "smoke", "epochs": epochs},
            timeout=0,
        )
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:  # the first checkpoint of the new run directory
        new = [d for d in runs_dir.glob(f"retrain-{variant}-*") if d not in earlier]
        if new and (new[0] / "metrics.jsonl").is_file():
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no checkpoint of the new run:\n{_logs(platform)}")
    _kill_tree(platform.workers["cpu"])
    run_dir = new[0]
    done_at_kill = len((run_dir / "metrics.jsonl").read_text().splitlines())
    assert 1 <= done_at_kill < epochs, "killed too late to test a resume"

    crashed = _wait_state(
        platform, run.id, lambda s: s.type == StateType.CRASHED, timeout=CRASH_WINDOW_S + 120
    )
    assert "heartbeat" in (crashed.state.message or "")

    platform.workers["cpu"] = _start_worker(platform.env, "cpu", platform.logs)
    retried_at = crashed.state.timestamp
    _prefect(platform.env, "flow-run", "retry", str(run.id))
    final = _wait_state(platform, run.id, lambda s: s.is_final(), timeout=RUN_TIMEOUT)
    assert final.state.is_completed(), f"retried run ended {final.state.type}:\n{_logs(platform)}"

    # the retry trained only what the killed attempt had not checkpointed
    after_retry = _epochs_logged(platform, run.id, since=retried_at, epochs=epochs)
    assert after_retry and after_retry == list(range(after_retry[0], epochs + 1)), after_retry
    assert after_retry[0] > done_at_kill >= 1
    history = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert history == list(range(1, epochs + 1))
    # and registered exactly one new version
    now = {v.version for v in registry.search_model_versions(f"name='detops-{variant}'")}
    assert len(now - before) == 1 and before <= now
