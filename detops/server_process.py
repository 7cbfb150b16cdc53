"""A server run as a child process group: started in a session of its own and stopped as a whole.

``mlflow server`` and ``mlflow models serve`` start their web servers (gunicorn, uvicorn) as children,
which outlive a signal sent to MLflow's own process; ``detops ui`` and ``detops serve`` therefore stop
the whole group: SIGTERM, then SIGKILL for what is left after a timeout. The group has a session of
its own, so a SIGTERM sent to the command's process group does not reach it: while the server runs,
a SIGTERM to this process is turned into ``KeyboardInterrupt`` (as Ctrl-C), which stops the group too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence


@contextlib.contextmanager
def server_group(
    command: Sequence[str], *, env: Mapping[str, str], stop_timeout: float = 15.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` in a new session (its own process group) and yield the process; however the
    block ends, stop every process of the group still alive (SIGTERM, SIGKILL after ``stop_timeout``).
    In the main thread, a SIGTERM to this process raises ``KeyboardInterrupt`` inside the block."""
    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        proc = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None or _group_alive(proc.pid):
                stop_group(proc, timeout=stop_timeout)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_group(proc: subprocess.Popen[bytes], *, timeout: float) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``); SIGKILL what is
    left of it after ``timeout`` s. Nothing to do for a group already gone."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, so that a group of zombies does not count as alive
        if not _group_alive(proc.pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
