"""``detops.tracking.runs``: the run id file, run id resolution, experiments, metric keys, logging into
an existing run and fetching a run's artifact, against a real MLflow store; whole error messages."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from detops.errors import DetopsError
from detops.settings import Settings, get_settings
from detops.tracking.runs import (
    BEST_CHECKPOINT,
    RUN_ID_FILE,
    ensure_experiment,
    fetch_run_artifact,
    get_or_create_experiment,
    local_artifact_root,
    log_to_run,
    metric_key,
    resolve_run_id,
    run_id_for,
    write_run_id,
)

pytestmark = pytest.mark.usefixtures("process_settings_elsewhere")

RID = "0123456789abcdef0123456789abcdef"
UNREACHABLE = "http://alice:pw-s3cret@127.0.0.1:9"  # nothing listens on the discard port


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _new_experiment(uri: str, name: str, tmp_path: Path) -> str:
    """A new experiment whose artifacts go under ``tmp_path`` (a local store's default is ./mlruns)."""
    location = None if uri.startswith("http") else (tmp_path / "artifacts").as_uri()
    return str(_client(uri).create_experiment(name, artifact_location=location))


def _new_run(uri: str, tmp_path: Path) -> str:
    experiment = _new_experiment(uri, f"runs-{uuid.uuid4().hex}", tmp_path)
    return str(_client(uri).create_run(experiment).info.run_id)


def _use_process_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uri: str) -> None:
    monkeypatch.setenv("DETOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_URI", uri)
    get_settings.cache_clear()


# the run id file and resolution


def test_write_run_id_writes_one_line_named_mlflow_run_id(tmp_path: Path) -> None:
    assert RUN_ID_FILE == "mlflow_run_id"
    assert write_run_id(tmp_path, RID) == tmp_path / "mlflow_run_id"
    assert (tmp_path / "mlflow_run_id").read_text() == RID + "\n"
    write_run_id(str(tmp_path), "ab" * 16)  # replaces
    assert (tmp_path / "mlflow_run_id").read_text() == "ab" * 16 + "\n"


def test_run_id_for_reads_the_stripped_id_or_none(tmp_path: Path) -> None:
    assert run_id_for(tmp_path) is None
    assert run_id_for(tmp_path / "missing") is None
    (tmp_path / "mlflow_run_id").mkdir()  # not a file
    assert run_id_for(tmp_path) is None
    other = tmp_path / "run"
    other.mkdir()
    (other / "mlflow_run_id").write_text(f"  {RID}\n\n")
    assert run_id_for(other) == RID
    assert run_id_for(str(other)) == RID


@pytest.mark.parametrize(
    "text", ["A" * 32, "a" * 31, "a" * 33, "g" * 32, "", f"{RID}x", f"x{RID}", "ab" * 8 + " " + "ab" * 8]
)
def test_run_id_for_refuses_what_is_not_32_lowercase_hex(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mlflow_run_id"
    path.write_text(text + "\n")
    with pytest.raises(DetopsError) as info:
        run_id_for(tmp_path)
    assert str(info.value) == f"{path}: not an MLflow run id: '{text}'"


def test_resolve_run_id_from_a_run_directory_or_an_id(tmp_path: Path) -> None:
    with pytest.raises(DetopsError) as info:
        resolve_run_id(tmp_path)
    assert (
        str(info.value) == f"run directory {tmp_path}: no mlflow_run_id file (was it trained with --track?)"
    )
    (tmp_path / "mlflow_run_id").write_text(RID + "\n")
    assert resolve_run_id(tmp_path) == RID
    assert resolve_run_id(str(tmp_path)) == RID
    assert resolve_run_id(f"  {RID}\n") == RID
    assert resolve_run_id(Path(RID)) == RID  # no such directory: taken as an id
    for bad in ("not-a-run", "A" * 32, RID + "0"):
        with pytest.raises(DetopsError) as info:
            resolve_run_id(f" {bad} ")
        assert str(info.value) == (
            f"--run-id: '{bad}' is neither a run directory nor an MLflow run id (32 hex digits)"
        )
    (tmp_path / "file.txt").write_text("x")  # a file is not a run directory
    with pytest.raises(DetopsError, match="is neither a run directory"):
        resolve_run_id(tmp_path / "file.txt")


# experiments


@pytest.mark.parametrize("uri", ["http://h:5000", "https://h", "databricks", "databricks-uc"])
def test_a_tracking_server_chooses_its_artifact_root(tmp_path: Path, uri: str) -> None:
    assert local_artifact_root(Settings(project_root=tmp_path, mlflow_tracking_uri=uri)) is None


@pytest.mark.parametrize("uri", ["", "sqlite:///x.db", "file:///tmp/mlruns", "postgresql://u@h/db"])
def test_a_local_store_keeps_artifacts_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(project_root=tmp_path, home=Path("rel-home"), mlflow_tracking_uri=uri)
    assert local_artifact_root(settings) == f"file://{tmp_path}/rel-home/mlartifacts"


def test_get_or_create_experiment_new_existing_and_deleted(tracking_uri: str, tmp_path: Path) -> None:
    client = _client(tracking_uri)
    name = f"exp-{uuid.uuid4().hex}"
    location = (tmp_path / "art").as_uri()
    created = get_or_create_experiment(client, name, artifact_location=location)
    assert isinstance(created, str)
    found = client.get_experiment_by_name(name)
    assert found.experiment_id == created
    if not tracking_uri.startswith("http"):  # a server may rewrite the location it is given
        assert found.artifact_location == location
    assert get_or_create_experiment(client, name, artifact_location=(tmp_path / "other").as_uri()) == created
    assert client.get_experiment(created).artifact_location == found.artifact_location  # unchanged
    client.delete_experiment(created)
    # a deleted experiment still holds its name: its id comes back (MLflow refuses to create another)
    assert get_or_create_experiment(client, name, artifact_location=location) == created
    assert client.get_experiment(created).lifecycle_stage == "deleted"


def test_get_or_create_experiment_when_another_process_created_it_first(
    tracking_uri: str, tmp_path: Path
) -> None:
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    name = f"race-{uuid.uuid4().hex}"
    existing = _new_experiment(tracking_uri, name, tmp_path)

    class LateLookup:
        """The first lookup misses the experiment (created in between by someone else)."""

        def __init__(self, misses: int) -> None:
            self.misses = misses
            self.created: list[tuple[str, str | None]] = []

        def get_experiment_by_name(self, n: str) -> Any:
            if self.misses:
                self.misses -= 1
                return None
            return client.get_experiment_by_name(n)

        def create_experiment(self, n: str, *, artifact_location: str | None) -> str:
            self.created.append((n, artifact_location))
            return str(client.create_experiment(n, artifact_location=artifact_location))

    late = LateLookup(misses=1)
    assert get_or_create_experiment(late, name, artifact_location="file:///x") == existing
    assert late.created == [(name, "file:///x")]
    with pytest.raises(MlflowException):  # still not found after the refused create: its error stands
        get_or_create_experiment(LateLookup(misses=2), name, artifact_location=None)


def test_ensure_experiment_on_the_given_or_the_process_settings(
    tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(tracking_uri)
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=tracking_uri)
    name = f"ensure-{uuid.uuid4().hex}"
    experiment_id = ensure_experiment(name, settings=settings)
    assert client.get_experiment_by_name(name).experiment_id == experiment_id
    if not tracking_uri.startswith("http"):
        assert (
            client.get_experiment(experiment_id).artifact_location
            == (tmp_path / "home" / "mlartifacts").as_uri()
        )
    assert ensure_experiment(name, settings=settings) == experiment_id
    _use_process_settings(monkeypatch, tmp_path, tracking_uri)
    assert ensure_experiment(name) == experiment_id


# metric keys


def test_metric_key_keeps_letters_digits_and_the_five_separators() -> None:
    kept = "azAZ09_-. /:"
    assert metric_key(kept) == kept
    assert metric_key("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    )
    assert metric_key("a(b)#c@d+e,f=g;h\ti\nj'k\"l\\m|n*o?p%q&r!s~t`u[v]w{x}y<z>é") == (
        "a_b__c_d_e_f_g_h_i_j_k_l_m_n_o_p_q_r_s_t_u_v_w_x_y_z__"
    )
    assert metric_key("") == ""
    assert metric_key("final/AP_class/blue triangle") == "final/AP_class/blue triangle"


# logging into a run


def test_log_to_run_adds_metrics_params_tags_and_artifacts(tracking_uri: str, tmp_path: Path) -> None:
    client = _client(tracking_uri)
    run_id = _new_run(tracking_uri, tmp_path)
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=tracking_uri)
    one = tmp_path / "one.json"
    one.write_text("1")
    folder = tmp_path / "folder"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "deep" / "b.txt").write_text("b")
    before = int(time.time() * 1000)
    log_to_run(
        run_id,
        metrics={"m(1)": 1, "m/2": 2.5},
        params={"p#": 3, "q": [1, 2], "r": None},
        tags={"t@": 4, "u": "v w"},
        artifacts=[one, str(folder)],
        artifact_dir="stage",
        settings=settings,
    )
    after = int(time.time() * 1000)
    run = client.get_run(run_id)
    assert run.data.metrics == {"m_1_": 1.0, "m/2": 2.5}
    assert run.data.params == {"p_": "3", "q": "[1, 2]", "r": "None"}
    assert {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")} == {"t_": "4", "u": "v w"}
    (m,) = client.get_metric_history(run_id, "m_1_")
    assert m.step == 0 and before <= m.timestamp <= after
    listed = {f.path for f in client.list_artifacts(run_id, "stage")}
    assert listed == {"stage/one.json", "stage/a.txt", "stage/deep"}
    assert {f.path for f in client.list_artifacts(run_id, "stage/deep")} == {"stage/deep/b.txt"}
    # at a step, without artifact_dir: to the root
    log_to_run(run_id, metrics={"m/2": 5.0}, artifacts=[one], step=7, settings=settings)
    assert [(h.step, h.value) for h in client.get_metric_history(run_id, "m/2")] == [(0, 2.5), (7, 5.0)]
    assert "one.json" in {f.path for f in client.list_artifacts(run_id)}


def test_log_to_run_sends_more_than_a_thousand_metrics_and_params_alone(
    tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    client = _client(tracking_uri)
    run_id = _new_run(tracking_uri, tmp_path)
    _use_process_settings(monkeypatch, tmp_path, tracking_uri)  # the default settings
    sent: list[tuple[int, int, int]] = []  # metrics, params and tags of each request
    log_batch = MlflowClient.log_batch

    def spy(self: Any, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kw: Any) -> Any:
        sent.append((len(metrics), len(params), len(tags)))
        return log_batch(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", spy)
    log_to_run(run_id, metrics={f"k{i:04d}": i for i in range(2500)}, params={"p": 1}, tags={"t": 2})
    assert sent == [(1000, 1, 1), (1000, 0, 0), (500, 0, 0)]  # params and tags once, with the first
    run = client.get_run(run_id)
    assert run.data.metrics == {f"k{i:04d}": float(i) for i in range(2500)}
    assert run.data.params == {"p": "1"} and run.data.tags["t"] == "2"
    only = _new_run(tracking_uri, tmp_path)
    log_to_run(only, params={"p": "x"}, tags={"t": "y"})  # no metrics: params and tags still sent
    run = client.get_run(only)
    assert run.data.params == {"p": "x"} and run.data.tags["t"] == "y" and run.data.metrics == {}
    few = _new_run(tracking_uri, tmp_path)
    log_to_run(few, metrics={"a": 1.0}, params={"p": "x"})
    assert client.get_run(few).data.metrics == {"a": 1.0}


def test_log_to_run_errors_name_the_run_and_the_store(tracking_uri: str, tmp_path: Path) -> None:
    run_id = _new_run(tracking_uri, tmp_path)
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=tracking_uri)
    missing = tmp_path / "missing.onnx"
    with pytest.raises(DetopsError) as info:
        log_to_run(run_id, artifacts=[missing], settings=settings)
    assert str(info.value) == f"artifact {missing}: no such file or directory"
    log_to_run(run_id, params={"p": 1}, settings=settings)
    with pytest.raises(DetopsError) as info:
        log_to_run(run_id, params={"p": 2}, settings=settings)  # params are immutable
    prefix = f"MLflow run {run_id} at {tracking_uri}: "
    assert str(info.value).startswith(prefix) and "'p'" in str(info.value)
    with pytest.raises(DetopsError) as info:
        log_to_run("ab" * 16, metrics={"a": 1.0}, settings=settings)
    assert str(info.value).startswith(f"MLflow run {'ab' * 16} at {tracking_uri}: ")


def test_log_to_run_errors_carry_no_password(tmp_path: Path) -> None:
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=UNREACHABLE)
    with pytest.raises(DetopsError) as info:
        log_to_run(RID, metrics={"a": 1.0}, settings=settings)
    message = str(info.value)
    assert message.startswith(f"MLflow run {RID} at http://127.0.0.1:9: ")
    assert "pw-s3cret" not in message and "alice" not in message


# fetching an artifact


def test_fetch_run_artifact_downloads_the_best_checkpoint_once(
    tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    client = _client(tracking_uri)
    run_id = _new_run(tracking_uri, tmp_path)
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights")
    into: list[Any] = []  # where each download went
    download = MlflowClient.download_artifacts

    def spy(self: Any, run_id: str, path: str, dst_path: Any = None) -> str:
        into.append(dst_path)
        return download(self, run_id, path, dst_path)

    monkeypatch.setattr(MlflowClient, "download_artifacts", spy)
    client.log_artifact(run_id, str(ckpt), artifact_path="checkpoints")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    client.log_artifact(run_id, str(tmp_path / "metrics.jsonl"))
    assert BEST_CHECKPOINT == "checkpoints/best.pt"
    home = tmp_path / "home"
    settings = Settings(project_root=tmp_path, home=home, mlflow_tracking_uri=tracking_uri)
    target = home / "runs" / f"mlflow-{run_id}" / "best.pt"
    assert fetch_run_artifact(run_id, settings=settings) == target
    assert target.read_bytes() == b"weights"
    target.write_bytes(b"cached")  # a second fetch does not download again
    assert fetch_run_artifact(run_id, "checkpoints/best.pt", settings=settings) == target
    assert target.read_bytes() == b"cached"
    other = fetch_run_artifact(run_id, "metrics.jsonl", settings=settings)  # same run, another file
    assert other == target.parent / "metrics.jsonl" and other.read_text() == "{}\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["best.pt", "metrics.jsonl"]  # no temp dirs
    # each into a temporary directory beside its target: the final rename stays on one file system
    assert len(into) == 2 and all(d is not None and Path(d).parent == target.parent for d in into)
    _use_process_settings(monkeypatch, tmp_path / "p", tracking_uri)
    default = fetch_run_artifact(run_id)
    assert default == tmp_path / "p" / "home" / "runs" / f"mlflow-{run_id}" / "best.pt"
    assert default.read_bytes() == b"weights"


def test_fetch_run_artifact_error_names_run_and_artifact(tracking_uri: str, tmp_path: Path) -> None:
    run_id = _new_run(tracking_uri, tmp_path)
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=tracking_uri)
    with pytest.raises(DetopsError) as info:
        fetch_run_artifact(run_id, "checkpoints/nothing.pt", settings=settings)
    prefix = f"MLflow run {run_id} at {tracking_uri}: cannot fetch checkpoints/nothing.pt: "
    assert str(info.value).startswith(prefix) and len(str(info.value)) > len(prefix)
    assert list((tmp_path / "home" / "runs" / f"mlflow-{run_id}").iterdir()) == []  # nothing left


def test_fetch_run_artifact_error_carries_no_password(tmp_path: Path) -> None:
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=UNREACHABLE)
    with pytest.raises(DetopsError) as info:
        fetch_run_artifact(RID, settings=settings)
    message = str(info.value)
    assert message.startswith(f"MLflow run {RID} at http://127.0.0.1:9: cannot fetch checkpoints/best.pt: ")
    assert "pw-s3cret" not in message and "alice" not in message
