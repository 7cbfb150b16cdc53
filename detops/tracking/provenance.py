"""Where a run's code and data came from: git commit, dirty flag, package version, dataset version."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from detops.data.versioning import DATA_DIR, pulled_version, read_version

UNKNOWN = "unknown"


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def code_version(project_root: str | Path) -> dict[str, str]:
    """Tags describing the code: ``git_commit`` (``unknown`` outside git), ``git_dirty`` (``true`` when
    tracked files differ from the commit), ``detops_version``."""
    from importlib.metadata import PackageNotFoundError, version

    root = Path(project_root)
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    try:
        detops_version = version("detops")
    except PackageNotFoundError:
        detops_version = UNKNOWN
    return {
        "git_commit": commit or UNKNOWN,
        "git_dirty": UNKNOWN if status is None else str(bool(status)).lower(),
        "detops_version": detops_version,
    }


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's identity: ``digest`` (the DVC directory md5 when DVC tracks it, else a digest of the
    annotation files and the file list), ``tracked_by`` (``dvc`` or ``content``), ``git_revision``
    (the commit that last changed ``data.dvc``, ``unknown`` otherwise), ``root`` and ``files``."""

    digest: str
    tracked_by: str
    git_revision: str
    root: str
    files: int


def content_digest(root: str | Path) -> tuple[str, int]:
    """(md5 over every file's relative path and size plus the bytes of every ``.json`` file, file
    count). Cheap on large datasets: images are not read, annotations are."""
    base = Path(root)
    h = hashlib.md5()
    count = 0
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).as_posix()
        h.update(f"{rel}\0{path.stat().st_size}\n".encode())
        if path.suffix == ".json":
            h.update(path.read_bytes())
        count += 1
    return h.hexdigest(), count


def dataset_version(data_root: str | Path, *, project_root: str | Path) -> DatasetInfo:
    """The version of the dataset at ``data_root``: DVC's hash from ``<project>/data.dvc`` when
    ``data_root`` is the DVC-tracked ``<project>/data``, the version itself for a version pulled by
    ``pull_version`` (``.../datasets/<version>``), otherwise ``content_digest``."""
    root, project = Path(data_root).resolve(), Path(project_root).resolve()
    dvc_file = project / f"{DATA_DIR}.dvc"
    if dvc_file.is_file() and root == (project / DATA_DIR).resolve():
        md5, files = read_version(dvc_file)
        revision = _git(project, "log", "-1", "--format=%H", "--", dvc_file.name) or UNKNOWN
        return DatasetInfo(digest=md5, tracked_by="dvc", git_revision=revision, root=str(root), files=files)
    version = pulled_version(root)
    if version is not None:
        files = sum(1 for p in root.rglob("*") if p.is_file())
        revision = UNKNOWN  # the commit of data.dvc, when this project's data.dvc records the version
        if dvc_file.is_file() and read_version(dvc_file)[0] == version:
            revision = _git(project, "log", "-1", "--format=%H", "--", dvc_file.name) or UNKNOWN
        return DatasetInfo(
            digest=version, tracked_by="dvc", git_revision=revision, root=str(root), files=files
        )
    digest, files = content_digest(root)
    return DatasetInfo(digest=digest, tracked_by="content", git_revision=UNKNOWN, root=str(root), files=files)
