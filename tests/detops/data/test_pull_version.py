"""A dataset version pulled by its hash alone, into another home, with nothing of the pusher's project:
what a worker on another machine does with the version its flow run was given."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from detops.data.synth import synthesize
from detops.data.versioning import check_version, pull_version, version_dataset
from detops.errors import DetopsError
from detops.settings import Settings
from tests.conftest import tree_digest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:dvc.*")


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str]]:
    """(version, local remote, file digests) of a dataset pushed from a project that is then deleted."""
    from tests.conftest import make_dvc_project_at

    base = tmp_path_factory.mktemp("pushed")
    project = make_dvc_project_at(base / "project")
    synthesize(project / "data", train=4, val=2, size=64, seed=0, progress=False)
    remote = base / "remote"
    settings = Settings(project_root=project, dvc_local_remote=remote)
    version = version_dataset(project / "data", settings=settings, push=True, validate=False)
    digests = tree_digest(project / "data")
    shutil.rmtree(project)
    return version.md5, remote, digests


def _worker(tmp_path: Path, remote: Path) -> Settings:
    """Another machine: its own project directory and home, the same remote."""
    (tmp_path / "worker").mkdir()
    return Settings(project_root=tmp_path / "worker", home=tmp_path / "worker-home", dvc_local_remote=remote)


def test_version_round_trip_into_another_home(tmp_path: Path, pushed) -> None:
    version, remote, digests = pushed
    settings = _worker(tmp_path, remote)
    root = pull_version(version, settings=settings)
    assert root == settings.home / "datasets" / version and tree_digest(root) == digests
    # reused when present: the remote is not needed a second time
    no_remote = settings.model_copy(update={"dvc_local_remote": tmp_path / "no-remote"})
    assert pull_version(version, settings=no_remote) == root
    out = pull_version(version, settings=settings, out=tmp_path / "copy")
    assert tree_digest(out) == digests
    assert not [p for p in (tmp_path).iterdir() if ".partial-" in p.name]


def test_unknown_version_names_version_and_remote(tmp_path: Path, pushed) -> None:
    _, remote, _ = pushed
    settings = _worker(tmp_path, remote)
    unknown = "0" * 32
    with pytest.raises(
        DetopsError, match=f"dataset version {unknown}: cannot pull it from the DVC remote {remote}"
    ):
        pull_version(unknown, settings=settings)
    # nothing half-written counts as the version
    assert not (settings.home / "datasets" / unknown).exists()


def test_unreachable_remote_names_version_and_remote(tmp_path: Path) -> None:
    from tests.servers import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(
        project_root=tmp_path,
        home=tmp_path / "home",
        dvc_remote="s3",
        s3_bucket="detops-gone",
        s3_endpoint_url=endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="detops-secret-never-shown",
    )
    version = "1" * 32
    with pytest.raises(DetopsError) as caught:
        pull_version(version, settings=settings)
    message = str(caught.value)
    assert (
        message.startswith(f"dataset version {version}: DVC remote s3://detops-gone") and endpoint in message
    )
    assert "\n" not in message and "detops-secret-never-shown" not in message
    assert not (tmp_path / "home" / "datasets" / version).exists()


@pytest.mark.parametrize("bad", ["abc", "G" * 32, "0" * 31, "../" + "0" * 29])
def test_malformed_version_is_refused(bad: str) -> None:
    with pytest.raises(DetopsError, match="32 hex digits"):
        check_version(bad)


def test_out_that_exists_is_refused(tmp_path: Path, pushed) -> None:
    version, remote, _ = pushed
    settings = _worker(tmp_path, remote)
    (tmp_path / "taken").mkdir()
    with pytest.raises(DetopsError, match="already exists"):
        pull_version(version, settings=settings, out=tmp_path / "taken")


def test_a_flow_dataset_resolves_by_version_on_another_machine(tmp_path: Path, pushed) -> None:
    from detops.data.versioning import dataset_root_for
    from detops.tracking.provenance import dataset_version

    version, remote, digests = pushed
    settings = _worker(tmp_path, remote)
    # the pusher's directory is gone: the version and the remote are enough
    gone = {"version": version, "remote": str(remote), "root": "/nowhere/data"}
    root = dataset_root_for(gone, settings=settings)
    assert tree_digest(root) == digests
    # a training on it records the DVC version as its dataset input
    info = dataset_version(root, project_root=settings.project_root)
    assert (info.digest, info.tracked_by, info.files) == (version, "dvc", len(digests))
    # not pushed: only the machine that holds the directory can use it
    with pytest.raises(DetopsError, match="was not pushed and /nowhere/data is not on this machine"):
        dataset_root_for({**gone, "remote": None}, settings=settings)
    assert dataset_root_for({**gone, "remote": None, "root": str(root)}, settings=settings) == root


def test_cli_version_json_then_pull_by_version(tmp_path: Path, synth_root: Path, monkeypatch, capsys) -> None:
    import json

    from detops.cli import main
    from detops.settings import get_settings
    from tests.conftest import make_dvc_project_at

    project = make_dvc_project_at(tmp_path / "project")
    shutil.copytree(synth_root, project / "data")
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(project))
    monkeypatch.setenv("DETOPS_DVC_LOCAL_REMOTE", str(tmp_path / "remote"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("DETOPS_PREFECT_API_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert (
            main(["data", "version", str(project / "data"), "--push", "--json", "--sample-images", "0"]) == 0
        )
        pushed = json.loads(capsys.readouterr().out)
        assert set(pushed) == {"version", "remote", "files"} and pushed["remote"] == str(tmp_path / "remote")
        monkeypatch.setenv("DETOPS_HOME", str(tmp_path / "elsewhere"))
        get_settings.cache_clear()
        assert main(["data", "pull", "--version", pushed["version"]]) == 0
        path = Path(capsys.readouterr().out.strip().splitlines()[-1])
        assert path == tmp_path / "elsewhere" / "datasets" / pushed["version"]
        assert tree_digest(path) == tree_digest(project / "data")
        assert main(["data", "pull", "--version", "f" * 32]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: dataset version {'f' * 32}: cannot pull"), err
        assert "does not hold it" in err[0]
    finally:
        get_settings.cache_clear()


def test_registration_finds_a_version_another_worker_trained_on(tmp_path: Path, pushed) -> None:
    """A run's config names the training worker's copy (``.../datasets/<version>``); registering on
    another worker uses (or pulls) its own copy of that version."""
    from detops.registry.register import _local_data

    version, remote, digests = pushed
    settings = _worker(tmp_path, remote)
    theirs = Path("/gpu-worker/home/datasets") / version
    mine = _local_data(theirs, settings=settings)
    assert mine == settings.home / "datasets" / version and tree_digest(mine) == digests
    other = tmp_path / "plain"
    assert _local_data(other, settings=settings) == other  # not a version: left to the caller's check


def test_a_pulled_version_keeps_the_commit_of_the_projects_data_dvc(tmp_path: Path, git) -> None:
    """Trained on the pulled copy, the run still records the commit that versioned it, when this
    project's data.dvc records that version (the demo's case)."""
    from detops.tracking.provenance import dataset_version
    from tests.conftest import make_dvc_project_at

    project = make_dvc_project_at(tmp_path / "project")
    synthesize(project / "data", train=2, val=1, size=64, seed=0, progress=False)
    settings = Settings(project_root=project, dvc_local_remote=tmp_path / "remote")
    version = version_dataset(project / "data", settings=settings, push=True, validate=False).md5
    git(project, "add", "data.dvc", ".gitignore")
    git(project, "commit", "-q", "-m", "data")
    commit = git(project, "rev-parse", "HEAD").strip()
    info = dataset_version(pull_version(version, settings=settings), project_root=project)
    assert (info.digest, info.tracked_by, info.git_revision) == (version, "dvc", commit)
