"""Retrain on a cluster for real (slow): workers that share nothing with the machine that pushed the
data but the S3 remote, the MLflow server and the Prefect server.

Servers: ``prefect server start``, moto's S3 server (the DVC remote, MLflow's artifact store and
Prefect's result storage), ``mlflow server --app-name basic-auth`` on PostgreSQL 15 (workers log in
with the credentials of their settings). Three fresh clones of this commit, each
with its own ``DETOPS_HOME`` and ``PREFECT_HOME``: one pushes a dataset version and is deleted; one
runs a process worker of the ``cpu`` pool (the ``retrain`` flow), one a process worker of the ``gpu``
pool (the ``train`` flow, two ranks under ``torchrun`` with gloo on this CPU).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import servers

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ["damo_yolo_tiny", "rtdetrv2_tiny"]
RUN_TIMEOUT = 2400.0


@dataclass
class Cluster:
    api: str
    mlflow: str
    bucket: str
    env: dict[str, str]
    """What every process of the cluster sees (servers, S3, result storage); roles add their own."""
    base: Path
    logs: Path


def _role_env(c: Cluster, role: str) -> dict[str, str]:
    """A machine of its own: its clone as project root and code directory, its own homes."""
    clone = c.base / role
    return {
        **c.env,
        "DETOPS_PROJECT_ROOT": str(clone),
        "DETOPS_CODE_DIR": str(clone),
        "DETOPS_HOME": str(c.base / f"{role}-home"),
        "PREFECT_HOME": str(c.base / f"{role}-prefect-home"),
    }


def _clone(c: Cluster, role: str) -> Path:
    dest = c.base / role
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    return dest


def _prefect(env: dict[str, str], cwd: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _api(c: Cluster) -> Any:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: c.api})


@contextlib.contextmanager
def _s3(c: Cluster) -> Iterator[None]:
    """This process as a client of the cluster's S3 (to read MLflow artifacts)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "MLFLOW_S3_ENDPOINT_URL",
        ):
            mp.setenv(key, c.env[key])
        yield


def _logs(c: Cluster) -> str:
    return "\n".join(f"--- {f.name}\n{servers._tail(f, 60)}" for f in sorted(c.logs.glob("*.log")))


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: servers.PostgresServer,
    moto_s3: servers.MotoS3,
) -> Iterator[Cluster]:
    import boto3

    base = tmp_path_factory.mktemp("cluster")
    logs = base / "logs"
    logs.mkdir()
    bucket = f"detops-{uuid.uuid4().hex[:8]}"
    s3 = {
        "AWS_ACCESS_KEY_ID": servers.S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": moto_s3.url,
    }
    boto3.client(
        "s3",
        endpoint_url=moto_s3.url,
        region_name="us-east-1",
        aws_access_key_id=servers.S3_ACCESS_KEY,
        aws_secret_access_key=servers.S3_SECRET_KEY,
    ).create_bucket(Bucket=bucket)
    mlflow = servers.start_mlflow_server(
        root=base / "mlflow",
        backend_uri=postgres_server.create_database(f"mlflow_{uuid.uuid4().hex[:8]}"),
        artifacts=f"s3://{bucket}/mlflow",
        serve_artifacts=False,
        auth=True,  # basic-auth, as a shared tracking server is run: every worker must log in
        env=s3,
    )
    prefect = servers.start_prefect_server(root=base / "prefect")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        env = {
            **prefect.env,
            **s3,
            "DETOPS_MLFLOW_TRACKING_URI": mlflow.url,
            "DETOPS_MLFLOW_TRACKING_USERNAME": servers.AUTH_ADMIN_USER,
            "DETOPS_MLFLOW_TRACKING_PASSWORD": servers.AUTH_ADMIN_PASSWORD,
            "DETOPS_PREFECT_API_URL": prefect.api,
            "DETOPS_TRACK": "true",
            "DETOPS_DVC_REMOTE": "s3",
            "DETOPS_S3_BUCKET": bucket,
            "DETOPS_S3_PREFIX": "dvc",
            "DETOPS_S3_ENDPOINT_URL": moto_s3.url,
            "DETOPS_AWS_ACCESS_KEY_ID": servers.S3_ACCESS_KEY,
            "DETOPS_AWS_SECRET_ACCESS_KEY": servers.S3_SECRET_KEY,
            # the train flow runs' results, read by the retrain flow run on the other worker
            "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "remote-file-system/detops-results",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "OMP_NUM_THREADS": "1",
        }
        c = Cluster(api=prefect.api, mlflow=mlflow.url, bucket=bucket, env=env, base=base, logs=logs)
        from prefect.filesystems import RemoteFileSystem

        with _api(c):
            RemoteFileSystem(
                basepath=f"s3://{bucket}/prefect-results",
                settings={
                    "key": servers.S3_ACCESS_KEY,
                    "secret": servers.S3_SECRET_KEY,
                    "client_kwargs": {"endpoint_url": moto_s3.url},
                },
            ).save("detops-results", overwrite=True)
        for role in ("cpu", "gpu"):
            _clone(c, role)
        deployer = _role_env(c, "cpu")
        for pool in ("cpu", "gpu", "t4"):
            _prefect(deployer, base / "cpu", "work-pool", "create", pool, "--type", "process")
        _prefect(deployer, base / "cpu", "deploy", "--all")
        with _api(c):
            _tiny_defaults()
        for role in ("cpu", "gpu"):
            log = (logs / f"worker-{role}.log").open("wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "prefect", "worker", "start", "--pool", role, "--type", "process"],
                    cwd=base / role,
                    env=_role_env(c, role),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        _wait_workers(c, ("cpu", "gpu"))
        with pytest.MonkeyPatch.context() as mp:  # this process reads the registry as that user too
            mp.setenv("MLFLOW_TRACKING_USERNAME", servers.AUTH_ADMIN_USER)
            mp.setenv("MLFLOW_TRACKING_PASSWORD", servers.AUTH_ADMIN_PASSWORD)
            yield c
    finally:
        for proc in workers:
            servers._stop_process(proc)
        prefect.stop()
        mlflow.stop()


def _tiny_defaults() -> None:
    """The event-triggered deployment's defaults for this test: the tiny variants, one epoch, two
    ranks per training (the trigger adds the dataset version); the nightly schedule paused."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain/retrain-on-new-data")
        client.update_deployment(
            deployment.id,
            DeploymentUpdate(parameters={"variants": VARIANTS, "preset": "smoke", "epochs": 1, "gpus": 2}),
        )
        nightly = client.read_deployment_by_name("retrain/retrain-nightly")
        for schedule in nightly.schedules:
            client.update_deployment_schedule(nightly.id, schedule.id, active=False)


def _wait_workers(c: Cluster, pools: tuple[str, ...], timeout: float = 300) -> None:
    from tasks.workers import pool_has_worker

    deadline = time.monotonic() + timeout
    with _api(c):
        while time.monotonic() < deadline:
            if all(pool_has_worker(pool)[0] for pool in pools):
                return
            time.sleep(2)
    pytest.fail(f"workers of {pools} did not come online:\n{_logs(c)}")


def _flow_runs(c: Cluster, flow_name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _api(c), get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def _wait_final(c: Cluster, flow_name: str, count: int, *, timeout: float = RUN_TIMEOUT) -> list[Any]:
    deadline = time.monotonic() + timeout
    runs: list[Any] = []
    while time.monotonic() < deadline:
        runs = _flow_runs(c, flow_name)
        if len(runs) >= count and all(r.state and r.state.is_final() for r in runs):
            return runs
        time.sleep(5)
    pytest.fail(f"{count} final run(s) of {flow_name} not seen in time: {runs}\n{_logs(c)}")


def _push(c: Cluster, *, seed: int) -> dict[str, Any]:
    """Push the synthetic dataset of ``seed`` from a fresh clone, then delete that clone and its
    home: the version (``--json``) is all that is left of it."""
    from detops.data.synth import synthesize

    role = f"pusher-{uuid.uuid4().hex[:6]}"
    pusher = _clone(c, role)
    synthesize(pusher / "data", train=8, val=4, size=128, seed=seed, progress=False)
    out = subprocess.run(
        [sys.executable, "-m", "detops.cli", "data", "version", "data", "--push", "--json"],
        cwd=pusher,
        env=_role_env(c, role),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    shutil.rmtree(pusher)
    shutil.rmtree(c.base / f"{role}-home", ignore_errors=True)
    return dict(json.loads(out.stdout))


def _retrain_of(c: Cluster, version: str, *, nth: int = 1) -> Any:
    """The ``nth`` retrain run for ``version`` once it is final."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        runs = [r for r in _flow_runs(c, "retrain") if r.parameters.get("dataset_version") == version]
        if len(runs) >= nth and all(r.state and r.state.is_final() for r in runs):
            return sorted(runs, key=lambda r: r.created)[nth - 1]
        time.sleep(5)
    pytest.fail(f"no final retrain #{nth} of {version}:\n{_logs(c)}")


@pytest.fixture(scope="module")
def pushed(cluster: Cluster) -> dict[str, Any]:
    """A dataset version pushed from a third clone, which is then deleted; the retrain its event
    triggered, finished."""
    version = _push(cluster, seed=0)
    return {"version": version, "retrain": _retrain_of(cluster, version["version"])}


def test_a_pushed_version_is_retrained_on_the_gpu_pool_under_torchrun(cluster: Cluster, pushed) -> None:
    from mlflow import MlflowClient

    version = pushed["version"]
    assert version["remote"] == f"s3://{cluster.bucket}/dvc"
    retrain = pushed["retrain"]
    assert retrain.state.is_completed(), (
        f"retrain ended {retrain.state.type}: {retrain.state.message}\n{_logs(cluster)}"
    )
    assert retrain.parameters["dataset_version"] == version["version"] and retrain.work_pool_name == "cpu"
    trains = _wait_final(cluster, "train", 2)
    assert sorted(r.parameters["variant"] for r in trains) == sorted(VARIANTS)
    assert all(r.state.is_completed() and r.work_pool_name == "gpu" for r in trains)
    # the gpu worker pulled the version into its own home; the cpu worker did too (evaluation)
    for role in ("gpu", "cpu"):
        assert (cluster.base / f"{role}-home" / "datasets" / version["version"] / "annotations").is_dir(), (
            role
        )
    mlflow = MlflowClient(tracking_uri=cluster.mlflow)
    for variant in VARIANTS:
        (model_version,) = mlflow.search_model_versions(f"name='detops-{variant}'")
        run = mlflow.get_run(model_version.run_id)
        assert run.data.tags["detops.dataset_digest"] == version["version"]
        assert run.data.tags.get("prefect.flow_run_id") in {str(r.id) for r in trains}
        assert run.info.artifact_uri.startswith(f"s3://{cluster.bucket}/mlflow/")
        assert model_version.source.startswith(("s3://", "models:/", "runs:/"))
        assert (
            mlflow.get_model_version_by_alias(f"detops-{variant}", "champion").version
            == model_version.version
        )
        with _s3(cluster):
            summary = json.loads(Path(mlflow.download_artifacts(run.info.run_id, "summary.json")).read_text())
        assert summary["world_size"] == 2, "not two ranks"
    # the training's run directory was scratch on the gpu worker; the cpu worker's export fetched
    # the checkpoint from the artifact store
    assert not list((cluster.base / "gpu-home" / "scratch").iterdir())
    assert list((cluster.base / "cpu-home" / "runs").glob("mlflow-*/best.pt"))
    # every worker logged in to the basic-auth server, and its password appears in no log, param or tag
    secret = servers.AUTH_ADMIN_PASSWORD
    leaked = [f.name for f in cluster.logs.glob("*.log") if secret in f.read_text(errors="replace")]
    assert not leaked, leaked
    for variant in VARIANTS:
        (model_version,) = mlflow.search_model_versions(f"name='detops-{variant}'")
        data = mlflow.get_run(model_version.run_id).data
        assert not [k for k, v in {**data.params, **data.tags, **model_version.tags}.items() if secret in v]


def test_an_unknown_version_stops_before_training(cluster: Cluster, pushed) -> None:
    from prefect.deployments import run_deployment

    unknown = "f" * 32
    with _api(cluster):
        run = run_deployment(
            "retrain/retrain-on-new-data",
            parameters={"dataset_version": unknown},
            timeout=600,
            poll_interval=5,
        )
    assert run.state.is_failed(), run.state
    assert f"dataset version {unknown}: cannot pull it from the DVC remote s3://{cluster.bucket}/dvc" in (
        run.state.message or ""
    ) or _logged(cluster, run.id, unknown)
    assert len(_flow_runs(cluster, "train")) == 2, "no training started for the unknown version"


def _logged(c: Cluster, flow_run_id: Any, text: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with _api(c), get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return any(text in log.message for log in logs)


def test_a_changed_push_retrains_and_an_unchanged_one_trains_nothing(cluster: Cluster, pushed) -> None:
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    changed = _push(cluster, seed=1)
    assert changed["version"] != pushed["version"]["version"]
    retrain = _retrain_of(cluster, changed["version"])
    assert retrain.state.is_completed(), f"{retrain.state.message}\n{_logs(cluster)}"
    mlflow = MlflowClient(tracking_uri=cluster.mlflow)
    for variant in VARIANTS:
        versions = mlflow.search_model_versions(f"name='detops-{variant}'")
        assert len(versions) == 2, variant
        newest = max(versions, key=lambda v: int(v.version))
        assert mlflow.get_run(newest.run_id).data.tags["detops.dataset_digest"] == changed["version"]

    trains_before = {r.id for r in _flow_runs(cluster, "train")}
    again = _push(cluster, seed=1)  # the same bytes: the same version
    assert again["version"] == changed["version"]
    rerun = _retrain_of(cluster, changed["version"], nth=2)
    assert rerun.state.is_completed(), f"{rerun.state.message}\n{_logs(cluster)}"
    new_trains = [r for r in _flow_runs(cluster, "train") if r.id not in trains_before]
    assert len(new_trains) == 2
    with _api(cluster), get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in new_trains]))
        )
    states = sorted(t.state.name for t in task_runs if t.name.startswith("train-"))
    assert states == ["Cached", "Cached"], states
    for variant in VARIANTS:
        assert len(mlflow.search_model_versions(f"name='detops-{variant}'")) == 2, "no version added"


def _rank_process(variant: str, rank: int, epochs: int) -> int | None:
    """The pid of ``rank`` of the torchrun training of ``variant`` for ``epochs`` epochs on this host."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        wanted = [b"detops.cli", b"train", variant.encode(), b"--epochs", str(epochs).encode()]
        if all(w in argv for w in wanted) and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_a_killed_rank_fails_the_attempt_and_the_retry_resumes_from_the_store(
    cluster: Cluster, pushed
) -> None:
    """SIGKILL rank 1 once the training has uploaded an epoch: the train flow run's attempt fails
    naming the rank, its retry resumes from the artifact store (the first attempt's scratch run
    directory is gone) in the same MLflow run, and the retrain adds one model version."""
    import os
    import signal

    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    variant, epochs = "damo_yolo_tiny", 8
    mlflow = MlflowClient(tracking_uri=cluster.mlflow)
    before = len(mlflow.search_model_versions(f"name='detops-{variant}'"))
    trains_before = {r.id for r in _flow_runs(cluster, "train")}
    with _api(cluster):
        retrain = run_deployment(
            "retrain/retrain-on-new-data",
            parameters={
                "dataset_version": pushed["version"]["version"],
                "variants": [variant],
                "epochs": epochs,
            },
            timeout=0,
        )
    experiment = mlflow.get_experiment_by_name(f"detops-{variant}").experiment_id
    killed = None
    deadline = time.monotonic() + 900
    with _s3(cluster):
        while killed is None and time.monotonic() < deadline:
            for run in mlflow.search_runs([experiment], filter_string="attributes.status = 'RUNNING'"):
                if run.data.params.get("epochs") != str(epochs):
                    continue
                stored = mlflow.list_artifacts(run.info.run_id, "checkpoints")
                if any(f.path == "checkpoints/last.pt" for f in stored):
                    pid = _rank_process(variant, 1, epochs)
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                        killed = run.info.run_id
                        break
            time.sleep(0.3)
    assert killed, f"no training of {epochs} epochs with an uploaded checkpoint to kill:\n{_logs(cluster)}"

    with _api(cluster), get_client(sync_client=True) as client:
        while not (state := client.read_flow_run(retrain.id).state).is_final():
            assert time.monotonic() < deadline + RUN_TIMEOUT, "retrain did not finish"
            time.sleep(5)
        assert state.is_completed(), f"{state.message}\n{_logs(cluster)}"
        (train,) = [r for r in _flow_runs(cluster, "train") if r.id not in trains_before]
        states = client.read_flow_run_states(train.id)
    assert train.state.is_completed() and train.run_count == 2, (train.state, train.run_count)
    failures = [s.message or "" for s in states if "rank" in (s.message or "")]
    assert any("rank 1: Signal 9 (SIGKILL)" in m for m in failures), [(s.name, s.message) for s in states]
    assert _logged(cluster, train.id, "resuming from epoch")
    # the same MLflow run, finished, every epoch in its history
    (run,) = mlflow.search_runs([experiment], filter_string=f"tags.`prefect.flow_run_id` = '{train.id}'")
    assert run.info.run_id == killed and run.info.status == "FINISHED"
    steps = {m.step for m in mlflow.get_metric_history(killed, "train/loss")}
    assert steps == set(range(1, epochs + 1)), steps
    versions = mlflow.search_model_versions(f"name='detops-{variant}'")
    assert len(versions) == before + 1 and max(versions, key=lambda v: int(v.version)).run_id == killed
    assert not list((cluster.base / "gpu-home" / "scratch").iterdir())
