"""`make test` runs in pytest-xdist workers with `--dist loadgroup`: the tests of one server, or of
one module-scoped fixture, must land in one worker, or each worker starts the server (or trains the
module's model) again. pytest 9.2 with pytest-xdist 3.8 dropped the grouping without a word."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = """
import os
import pytest

@pytest.fixture(scope="module")
def shared():
    return os.environ["PYTEST_XDIST_WORKER"]

@pytest.mark.parametrize("n", range(6))
def test_worker(shared, n):
    assert shared == os.environ["PYTEST_XDIST_WORKER"]
"""
CONFTEST = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.xdist_group(name=item.nodeid.split("::", 1)[0]))
"""


def test_a_group_runs_in_one_worker(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for name in ("test_one.py", "test_two.py"):
        (tmp_path / name).write_text(TESTS)
    args = [
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "-v",
        "-p",
        "xdist",
        "-p",
        "no:cacheprovider",
        "-c",
        "/dev/null",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # only xdist, not every plugin
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workers: dict[str, set[str]] = {}
    for worker, module, group in re.findall(r"\[(gw\d)\].*PASSED (test_\w+)\.py::\S+@(\S+)", done.stdout):
        assert group == f"{module}.py"
        workers.setdefault(module, set()).add(worker)
    assert sorted(workers) == ["test_one", "test_two"], done.stdout
    assert all(len(w) == 1 for w in workers.values()), workers
