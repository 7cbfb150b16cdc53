"""Tracking pieces without a server: the PR curve, dataset and code provenance, credentials in the
environment, run-id resolution, the `detops ui` command line."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from detops.cli import main
from detops.errors import DetopsError
from detops.settings import Settings, get_settings
from detops.tracking import RUN_ID_FILE, resolve_run_id, run_id_for, tracking_env
from detops.tracking.credentials import PASSWORD_VAR, USERNAME_VAR
from detops.tracking.final_eval import pr_curve_at_iou
from detops.tracking.provenance import code_version, content_digest, dataset_version
from detops.tracking.runs import metric_key, write_run_id
from detops.tracking.ui import is_remote, server_env, ui_command

IOUS = np.linspace(0.5, 0.95, 10)
RECALLS = np.linspace(0.0, 1.0, 101)


def test_pr_curve_takes_iou_half_area_all_last_maxdets_and_averages_valid_classes() -> None:
    precision = -np.ones((10, 101, 2, 4, 3))
    a = np.linspace(1.0, 0.2, 101)
    b = np.full(101, 0.4)
    b[60:] = -1  # class b never reaches recall 0.6
    precision[0, :, 0, 0, 2] = a
    precision[0, :, 1, 0, 2] = b
    precision[1, :, :, 0, 2] = 0.01  # IoU 0.55: ignored
    precision[0, :, :, 1, 2] = 0.02  # small objects: ignored
    precision[0, :, :, 0, 0] = 0.03  # max 1 detection: ignored
    precision[0, 100, :, 0, 2] = -1  # no class at recall 1.0: point dropped
    recall, prec = pr_curve_at_iou(precision, iou_thresholds=IOUS, recall_thresholds=RECALLS)
    assert recall == pytest.approx(list(RECALLS[:100]))
    expected = [(a[i] + b[i]) / 2 if i < 60 else a[i] for i in range(100)]
    assert prec == pytest.approx(expected)


def test_pr_curve_refuses_an_unevaluated_iou() -> None:
    with pytest.raises(ValueError, match="0.52"):
        pr_curve_at_iou(
            -np.ones((10, 101, 1, 4, 3)), iou_thresholds=IOUS, recall_thresholds=RECALLS, iou=0.52
        )


def _git(cwd: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_content_digest_reads_annotations_and_sizes(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val.json").write_text('{"images": []}')
    (root / "img.jpg").write_bytes(b"\x00" * 10)
    first, files = content_digest(root)
    assert files == 2 and content_digest(root)[0] == first
    (root / "annotations" / "instances_val.json").write_text('{"images": [1]}')
    second = content_digest(root)[0]
    assert second != first
    (root / "img.jpg").write_bytes(b"\x01" * 10)  # same size: images are not read (by design)
    assert content_digest(root)[0] == second
    (root / "img.jpg").write_bytes(b"\x01" * 11)
    assert content_digest(root)[0] != second


def test_dataset_version_uses_dvc_hash_and_its_commit(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "data").mkdir(parents=True)
    (project / "data" / "a.json").write_text("{}")
    (project / "data.dvc").write_text(
        "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  nfiles: 7\n  path: data\n"
    )
    _git(project, "init", "-q")
    _git(project, "add", "data.dvc")
    _git(project, "commit", "-q", "-m", "data")
    commit = _git(project, "rev-parse", "HEAD")
    (project / "other.txt").write_text("x")
    _git(project, "add", "other.txt")
    _git(project, "commit", "-q", "-m", "later")  # a later commit not touching data.dvc
    info = dataset_version(project / "data", project_root=project)
    assert (info.digest, info.tracked_by, info.git_revision, info.files) == (
        "0123456789abcdef0123456789abcdef",
        "dvc",
        commit,
        7,
    )
    elsewhere = dataset_version(project / "data", project_root=tmp_path)  # no data.dvc there
    assert elsewhere.tracked_by == "content" and elsewhere.digest == content_digest(project / "data")[0]


def test_code_version_commit_and_dirty_flag(tmp_path: Path) -> None:
    assert code_version(tmp_path)["git_commit"] == "unknown"
    _git(tmp_path, "init", "-q")
    (tmp_path / "f.py").write_text("a = 1\n")
    _git(tmp_path, "add", "f.py")
    _git(tmp_path, "commit", "-q", "-m", "c")
    clean = code_version(tmp_path)
    assert clean["git_commit"] == _git(tmp_path, "rev-parse", "HEAD") and clean["git_dirty"] == "false"
    (tmp_path / "untracked.txt").write_text("not code")
    assert code_version(tmp_path)["git_dirty"] == "false"
    (tmp_path / "f.py").write_text("a = 2\n")
    assert code_version(tmp_path)["git_dirty"] == "true"


def test_tracking_env_sets_and_restores_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USERNAME_VAR, "someone-else")
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    settings = Settings(
        mlflow_tracking_uri="http://127.0.0.1:1",
        mlflow_tracking_username="u",
        mlflow_tracking_password="pw-123",
    )
    assert "pw-123" not in repr(settings) and "pw-123" not in str(settings.model_dump())
    with tracking_env(settings) as uri:
        assert uri == "http://127.0.0.1:1"
        assert os.environ[USERNAME_VAR] == "u" and os.environ[PASSWORD_VAR] == "pw-123"
    assert os.environ[USERNAME_VAR] == "someone-else" and PASSWORD_VAR not in os.environ
    with pytest.raises(RuntimeError), tracking_env(settings):
        raise RuntimeError("restored on error too")
    assert PASSWORD_VAR not in os.environ
    with tracking_env(Settings(mlflow_tracking_uri="sqlite:///x.db")):
        assert os.environ[USERNAME_VAR] == "someone-else"  # no credentials configured: untouched


def test_overlapping_blocks_keep_the_credentials_until_the_last_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two tasks of one flow run in two threads, each in its own block: the first to end leaves the
    credentials to the one still running; the last restores what was there before either."""
    import threading

    monkeypatch.setenv(USERNAME_VAR, "before")
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    settings = Settings(
        mlflow_tracking_uri="http://127.0.0.1:1", mlflow_tracking_username="u", mlflow_tracking_password="pw"
    )
    first_in, first_out = threading.Event(), threading.Event()
    seen: list[tuple[str | None, str | None]] = []

    def second_task() -> None:
        first_in.wait(10)
        with tracking_env(settings):
            first_out.wait(10)  # the other block has ended meanwhile
            seen.append((os.environ.get(USERNAME_VAR), os.environ.get(PASSWORD_VAR)))

    worker = threading.Thread(target=second_task)
    worker.start()
    with tracking_env(settings):
        first_in.set()
        time.sleep(0.2)  # the second block opens while this one is open
    first_out.set()
    worker.join(10)
    assert seen == [("u", "pw")]
    assert os.environ[USERNAME_VAR] == "before" and PASSWORD_VAR not in os.environ
    # nested in one thread: the inner block's end keeps them for the outer one
    with tracking_env(settings):
        with tracking_env(settings):
            pass
        assert os.environ[PASSWORD_VAR] == "pw"
    assert PASSWORD_VAR not in os.environ


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:pw-123@mlflow.internal:5000", "http://mlflow.internal:5000"),
        ("https://token@host/api", "https://host/api"),
        (
            "API request to http://u:p@h:5000/api/2.0 failed; also s3://key:secret@bucket/x",
            "API request to http://h:5000/api/2.0 failed; also s3://bucket/x",
        ),
        ("https://host/path/a@b and user@example.org", "https://host/path/a@b and user@example.org"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("", ""),
    ],
)
def test_without_userinfo_removes_every_urls_credentials(text: str, expected: str) -> None:
    from detops.tracking.credentials import without_userinfo

    assert without_userinfo(text) == expected


def test_settings_read_credentials_from_detops_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_PASSWORD", "s3cret-value")
    s = Settings()
    assert s.mlflow_tracking_password is not None
    assert s.mlflow_tracking_password.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(s)


def test_run_id_file_and_resolution(tmp_path: Path) -> None:
    rid = "0123456789abcdef0123456789abcdef"
    assert run_id_for(tmp_path) is None
    with pytest.raises(DetopsError, match=RUN_ID_FILE):
        resolve_run_id(tmp_path)
    write_run_id(tmp_path, rid)
    assert resolve_run_id(tmp_path) == rid and resolve_run_id(rid) == rid
    with pytest.raises(DetopsError, match="not-a-run"):
        resolve_run_id("not-a-run")
    (tmp_path / RUN_ID_FILE).write_text("garbage\n")
    with pytest.raises(DetopsError, match="garbage"):
        run_id_for(tmp_path)


def test_metric_key_keeps_allowed_characters() -> None:
    assert metric_key("final/AP_class/blue triangle") == "final/AP_class/blue triangle"
    assert metric_key("AP(cat)#1") == "AP_cat__1"


def test_ui_command_serves_the_local_store(tmp_path: Path) -> None:
    s = Settings(project_root=tmp_path)
    cmd = ui_command(s, port=5123)
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / '.detops' / 'mlflow.db'}"
    assert cmd[cmd.index("--default-artifact-root") + 1] == (tmp_path / ".detops" / "mlartifacts").as_uri()
    assert cmd[cmd.index("--port") + 1] == "5123" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert not is_remote(s) and is_remote(
        Settings(project_root=tmp_path, mlflow_tracking_uri="https://m.example")
    )


def test_server_env_turns_the_job_runner_off_unless_chosen() -> None:
    env = server_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    chosen = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}
    assert server_env(chosen)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_ui_with_a_tracking_server_prints_its_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    get_settings.cache_clear()
    try:
        assert main(["ui"]) == 0
    finally:
        get_settings.cache_clear()
    assert "http://127.0.0.1:5999" in capsys.readouterr().out
