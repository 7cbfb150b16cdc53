"""Shared fixtures: a tiny synthetic COCO dataset built once per test session, git+DVC projects."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests import servers

SYNTH_TRAIN, SYNTH_VAL, SYNTH_SIZE, SYNTH_SEED = 8, 4, 128, 0

# Property tests draw the same examples on every run and machine (no example database either): a
# clean clone in CI sees what a developer saw. Random exploration is `--hypothesis-seed=random`
# (or HYPOTHESIS_PROFILE=explore); it has found cases that tests/detops/data/test_augment_properties.py
# ::test_random_affine_keeps_alignment fails (a box not tight on its rotated pixels), open work.
settings.register_profile("detops", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "detops"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset (8 train / 4 val images around 128 px, seed 0) in our COCO layout.

    Session-scoped and shared: tests must not modify it (copy it with ``shutil.copytree`` first).
    """
    from detops.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "data"
    synthesize(root, train=SYNTH_TRAIN, val=SYNTH_VAL, size=SYNTH_SIZE, seed=SYNTH_SEED, progress=False)
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root``: two trees with equal digests hold the
    same bytes."""
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a throwaway identity; returns stdout."""
    cmd = ["git", "-c", "user.name=detops-test", "-c", "user.email=test@detops.invalid", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_dvc_project_at(path: Path) -> Path:
    """Create a git repository at ``path`` with DVC initialised and ``/data/`` and ``/.detops/``
    ignored, commit it, and return ``path`` (module-scoped fixtures call it directly)."""
    path.mkdir()
    _git(path, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=path, check=True)
    (path / ".gitignore").write_text("/data/\n/.detops/\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "init")
    return path


@pytest.fixture
def make_dvc_project() -> Callable[[Path], Path]:
    """A factory: ``make_dvc_project(path)`` is ``make_dvc_project_at(path)``."""
    return make_dvc_project_at


@pytest.fixture
def git() -> Callable[..., str]:
    """``git(cwd, *args) -> stdout`` with a throwaway identity."""
    return _git


# Real servers (tests/servers.py), shared by the tracking and registry tests. Session-scoped: an MLflow
# server takes seconds to start on a small CPU. Tests must isolate themselves by experiment or model
# name, not by server.


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Runners set torch's process-wide intra-op thread count (``threads=``); put it back after each
    test, so later tests neither run single-threaded nor see other float summation orders."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _no_default_tracking() -> Iterator[None]:
    """``detops train`` tracks to MLflow by default; tests opt in with ``--track`` or a callback,
    so that no test writes to the project's own ``.detops/mlflow.db``."""
    from detops.settings import get_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETOPS_TRACK", "false")
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


# In one process, the session's servers start in the background as soon as the selected tests are
# known, one after the other, while the first tests run: a start is mostly one single-threaded process importing MLflow
# or Prefect (13-15 s each on 2 cores), which the tests before the first server test leave room for.
# The selected tests' default suite went from 206 s to 179 s with the two MLflow servers started so.
_SERVER_STARTS: dict[str, Callable[[], Any]] = {
    "mlflow_server": servers.start_mlflow_server,
    "mlflow_auth_server": lambda: servers.start_mlflow_server(auth=True),
    "prefect_server": servers.start_prefect_server,
}
_starting: dict[str, Future[Any]] = {}
_starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="server-start")


# Under pytest-xdist (`make test`: `-n auto --dist loadgroup`) every test that uses a session server
# joins one group, so one worker starts each server once, when first needed (no background start:
# the other worker keeps the second core busy meanwhile); each worker's torch gets its share of the
# cores. On the 2-core Xeon the default suite took 170 s in two workers against 208 s in one process.
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if XDIST_WORKERS:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // XDIST_WORKERS))


# A test module whose fixtures are module-scoped (one training, one demo run shared by its tests)
# runs in one worker too, or each worker builds them again.
_SHARED_SCOPES = {"module", "package", "class"}


def _shares_fixtures(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else ()
    return any(d.scope in _SHARED_SCOPES for defs in definitions for d in defs)


# pytest-xdist reads the marks after this hook (tests/test_xdist_groups.py checks that it applies them).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if set(getattr(item, "fixturenames", ())) & set(_SERVER_STARTS):
            item.add_marker(pytest.mark.xdist_group(name="servers"))
        elif item.get_closest_marker("xdist_group") is None and _shares_fixtures(item):
            item.add_marker(pytest.mark.xdist_group(name=item.nodeid.split("::", 1)[0]))


def pytest_collection_finish(session: pytest.Session) -> None:
    if XDIST_WORKERS:
        return
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    for name, start in _SERVER_STARTS.items():
        if name in used and not (name == "mlflow_server" and servers.shared_mlflow_server()):
            _starting[name] = _starter.submit(start)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop a server that was started and never used (the session stopped early)."""
    _starter.shutdown(wait=True)
    for future in _starting.values():
        if future.exception() is None:
            future.result().stop()


def _session_server(name: str) -> Iterator[Any]:
    shared = servers.shared_mlflow_server() if name == "mlflow_server" else None
    if shared is not None:
        yield shared
        return
    future = _starting.pop(name, None)
    server = future.result() if future is not None else _SERVER_STARTS[name]()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[servers.MlflowServer]:
    """A real ``mlflow server`` on loopback: SQLite backend, proxied local artifacts; ``.url``."""
    yield from _session_server("mlflow_server")


@pytest.fixture(scope="session")
def mlflow_auth_server() -> Iterator[servers.MlflowServer]:
    """A real ``mlflow server --app-name basic-auth``; admin ``servers.AUTH_ADMIN_USER`` /
    ``servers.AUTH_ADMIN_PASSWORD``, and no permissions for anyone else by default."""
    yield from _session_server("mlflow_auth_server")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[servers.PrefectServer]:
    """A real ``prefect server start`` on loopback with its own SQLite database; ``.api``, ``.env``."""
    yield from _session_server("prefect_server")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.PostgresServer]:
    """Debian's PostgreSQL 15 run as the postgres user on a free loopback port (skips if absent)."""
    reason = servers.postgres_missing()
    if reason:
        pytest.skip(reason)
    server = servers.start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[servers.MotoS3]:
    """moto's S3 server on a free loopback port; ``.url`` is the endpoint (any credentials work)."""
    server = servers.start_moto_s3()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[object]:
    """A Selenium driver for Debian's headless Chromium (skips when Chromium or its driver is absent)."""
    reason = servers.chromium_missing()
    if reason:
        pytest.skip(reason)
    driver = servers.chromium_driver(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()
