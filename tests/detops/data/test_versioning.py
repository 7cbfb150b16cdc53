"""DVC versioning round trip through a real S3 endpoint (moto's server) and a fresh git clone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detops.data.synth import synthesize
from detops.data.versioning import InvalidDatasetError, pull_dataset, read_version, version_dataset
from detops.errors import DetopsError
from detops.settings import Settings
from tests import servers
from tests.conftest import tree_digest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:dvc.*")

ACCESS_KEY, SECRET_KEY = "AKIDETOPSTEST", "detops-test-secret-value"


@pytest.fixture(scope="module")
def s3_endpoint(moto_s3: servers.MotoS3) -> str:
    """The session's moto S3 server (tests/servers.py); buckets are per test."""
    return moto_s3.url


def _settings(project: Path, endpoint: str, bucket: str) -> Settings:
    return Settings(
        project_root=project,
        dvc_remote="s3",
        s3_bucket=bucket,
        s3_prefix="datasets/dvc",
        s3_endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def test_s3_round_trip_through_fresh_clone(tmp_path: Path, s3_endpoint: str, make_dvc_project, git) -> None:
    import boto3

    project = make_dvc_project(tmp_path / "project")
    synthesize(project / "data", train=4, val=2, size=64, seed=0, progress=False)
    settings = _settings(project, s3_endpoint, "detops-roundtrip")
    version = version_dataset(project / "data", settings=settings, push=True, sample_images=None)
    assert len(version.md5) == 32 and version.files == 4 + 2 + 2
    assert version.pushed == version.files + 1  # the files plus the directory listing object
    assert read_version(project / "data.dvc") == (version.md5, version.files)
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="detops-roundtrip")["Contents"]]
    assert len(keys) == version.pushed and all(k.startswith("datasets/dvc/") for k in keys)

    git(project, "add", "data.dvc", ".gitignore")
    git(project, "commit", "-q", "-m", "data")
    # Credentials live only in the git-ignored .dvc/config.local.
    local = project / ".dvc" / "config.local"
    assert SECRET_KEY in local.read_text() and local.stat().st_mode & 0o077 == 0
    tracked = git(project, "ls-files").split()
    assert ".dvc/config.local" not in tracked
    assert all(SECRET_KEY not in (project / f).read_text(errors="ignore") for f in tracked)

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "data").exists() and not (clone / ".dvc" / "config.local").exists()
    pulled = pull_dataset(settings=_settings(clone, s3_endpoint, "detops-roundtrip"))
    assert pulled.md5 == version.md5
    assert tree_digest(clone / "data") == tree_digest(project / "data")
    assert len(tree_digest(clone / "data")) == version.files


def test_invalid_dataset_refused(tmp_path: Path, make_dvc_project) -> None:
    project = make_dvc_project(tmp_path / "project")
    synthesize(project / "data", train=2, val=2, size=64, seed=0, progress=False)
    ann = project / "data" / "annotations" / "instances_val.json"
    data = json.loads(ann.read_text())
    data["images"][0]["id"] = data["images"][1]["id"]
    ann.write_text(json.dumps(data))
    settings = Settings(project_root=project, dvc_local_remote=tmp_path / "remote")
    with pytest.raises(InvalidDatasetError) as info:
        version_dataset(project / "data", settings=settings, push=True)
    assert {(f.table, f.column) for f in info.value.report.failures} >= {("images", "id")}
    assert info.value.exit_code == 1
    assert not (project / "data.dvc").exists() and not (tmp_path / "remote").exists()


def test_local_remote_and_root_elsewhere(tmp_path: Path, make_dvc_project) -> None:
    project = make_dvc_project(tmp_path / "project")
    synthesize(project / "data", train=2, val=1, size=64, seed=0, progress=False)
    settings = Settings(project_root=project, dvc_local_remote=tmp_path / "remote")
    version = version_dataset(project / "data", settings=settings, push=True, sample_images=0)
    assert (tmp_path / "remote" / "files" / "md5" / version.md5[:2] / f"{version.md5[2:]}.dir").is_file()
    shutil.rmtree(project / "data")
    assert pull_dataset(settings=settings).md5 == version.md5
    assert len(tree_digest(project / "data")) == version.files
    with pytest.raises(DetopsError, match="copy the dataset there"):
        version_dataset(tmp_path / "elsewhere", settings=settings)
