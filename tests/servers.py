"""Real servers for tests: ``mlflow server`` (plain or basic-auth), ``mlflow models serve``, PostgreSQL 15,
moto's S3, Chromium.

Each helper starts a real process (or thread, for moto) on a free loopback port, waits until it
answers, and returns a handle whose ``stop()`` ends it and removes what it wrote. The fixtures in
``tests/conftest.py`` wrap these at session scope, because an MLflow server takes seconds to start on
a small CPU. Nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detops.server_process import stop_group
from detops.tracking import ui

PG_BIN = Path("/usr/lib/postgresql/15/bin")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# Credentials of the test servers only (nothing real): tests grep logged files for these.
AUTH_ADMIN_USER = "detops-admin"
AUTH_ADMIN_PASSWORD = "detops-test-admin-Pa55word"
S3_ACCESS_KEY, S3_SECRET_KEY = "AKIDETOPSMLFLOW", "detops-mlflow-s3-secret"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


def _stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 15.0) -> None:
    """SIGTERM the process group started for ``proc`` (its own session), then SIGKILL if needed: the
    library's own way of stopping a server (``detops.server_process.stop_group``)."""
    stop_group(proc, timeout=timeout)


@dataclass(kw_only=True)
class _Server:
    """A server process started here, its working directory ``root`` (holding ``server.log``)."""

    root: Path
    proc: subprocess.Popen[bytes] | None
    env: dict[str, str] = field(default_factory=dict)
    own_root: bool = True

    @property
    def log(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.root / "server.log"

    def stop(self) -> None:
        """Stop the server and remove its directory (when it created it); a shared server (no
        ``proc`` here) is left running for its owner."""
        if self.proc is None:
            return
        _stop_process(self.proc)
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass(kw_only=True)
class MlflowServer(_Server):
    """A running ``mlflow server``: ``url`` (http://127.0.0.1:PORT), its working directory ``root``
    (backend database, artifacts, ``server.log``) and the process."""

    url: str


def _wait_http(url: str, *, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    _stop_process(proc)
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s:\n{_tail(log)}")


def _launch(
    cmd: list[str], *, root: Path, env: dict[str, str], health: str, timeout: float, own_root: bool
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in ``root`` (output to ``root/server.log``) and wait until ``health`` answers;
    on failure stop it and, when ``own_root``, remove ``root``."""
    log = root / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_http(health, proc=proc, log=log, timeout=timeout)
    except Exception:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return proc


def start_mlflow_server(
    *,
    root: Path | None = None,
    backend_uri: str | None = None,
    artifacts: str | None = None,
    serve_artifacts: bool = True,
    auth: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> MlflowServer:
    """Start ``mlflow server`` on a free loopback port with one worker and wait for ``/health``.

    Defaults: a SQLite backend ``<root>/mlflow.db`` and proxied artifacts under ``<root>/artifacts``
    (clients log over HTTP). ``serve_artifacts=False`` makes ``artifacts`` the default artifact root
    that clients write to directly (e.g. ``s3://...``). ``auth=True`` runs ``--app-name basic-auth``
    with an admin ``AUTH_ADMIN_USER`` / ``AUTH_ADMIN_PASSWORD`` and default permission NO_PERMISSIONS.
    ``env`` adds variables to the server's environment (S3 endpoint and keys)."""
    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="detops-mlflow-")) if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_uri or f"sqlite:///{root / 'mlflow.db'}",
    ]
    if serve_artifacts:
        cmd += ["--artifacts-destination", artifacts or str(root / "artifacts")]
    else:
        cmd += ["--no-serve-artifacts", "--default-artifact-root", artifacts or str(root / "artifacts")]
    server_env = ui.server_env({**os.environ, **(env or {})})
    # The tracking client's own variables must not leak into the server.
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        server_env.pop(key, None)
    if auth:
        ini = root / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{root / 'auth.db'}\n"
            f"admin_username = {AUTH_ADMIN_USER}\n"
            f"admin_password = {AUTH_ADMIN_PASSWORD}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        server_env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        server_env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "detops-test-csrf-key"  # the auth app's CSRF key
        cmd += ["--app-name", "basic-auth"]
    url = f"http://127.0.0.1:{port}"
    proc = _launch(cmd, root=root, env=server_env, health=f"{url}/health", timeout=timeout, own_root=own_root)
    if auth:
        _cheap_admin_hash(root / "auth.db")
    return MlflowServer(url=url, root=root, proc=proc, env=env or {}, own_root=own_root)


@dataclass(kw_only=True)
class ModelServer(_Server):
    """A running ``mlflow models serve``: ``url`` (http://127.0.0.1:PORT; ``/invocations``, ``/ping``)."""

    url: str


def start_model_server(model_uri: str, *, tracking_uri: str, timeout: float = 300.0) -> ModelServer:
    """Start ``mlflow models serve -m MODEL_URI --env-manager local`` (the command ``detops serve``
    runs) on a free loopback port against the tracking server ``tracking_uri`` and wait for ``/ping``.
    The server process imports this checkout's ``detops`` (PYTHONPATH), whatever is installed."""
    import detops
    from detops.registry.serve import serve_command, serve_env
    from detops.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="detops-serve-"))
    port = free_port()
    checkout = str(Path(detops.__file__).resolve().parents[1])
    env = serve_env(Settings(mlflow_tracking_uri=tracking_uri))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH", "")) if p)
    url = f"http://127.0.0.1:{port}"
    cmd = serve_command(model_uri, host="127.0.0.1", port=port)
    proc = _launch(cmd, root=root, env=env, health=f"{url}/ping", timeout=timeout, own_root=True)
    return ModelServer(url=url, root=root, proc=proc, env=env)


@dataclass(kw_only=True)
class PrefectServer(_Server):
    """A running ``prefect server start``: ``api`` (http://127.0.0.1:PORT/api), its directory ``root``
    (PREFECT_HOME, SQLite database, ``server.log``), ``env`` (what a client or worker of it needs)."""

    api: str


def start_prefect_server(
    *, root: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300.0
) -> PrefectServer:
    """Start ``prefect server start`` (all services, no analytics) on a free loopback port with its
    own home and SQLite database under ``root``, and wait for ``/api/health``. ``env`` adds
    variables to the server's environment and to the returned ``env``."""
    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="detops-prefect-")) if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    client_env = {
        **os.environ,
        **(env or {}),
        "PREFECT_HOME": str(root / "home"),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = _launch(cmd, root=root, env=client_env, health=f"{api}/health", timeout=timeout, own_root=own_root)
    return PrefectServer(api=api, root=root, proc=proc, env=client_env, own_root=own_root)


def _cheap_admin_hash(auth_db: Path) -> None:
    """Store the test admin's password with 1,000 PBKDF2 rounds instead of werkzeug's default. The
    basic-auth app verifies the password on every request: at the default cost the 22 requests of one
    tracked tiny training took 15 s on a 2-core machine, about 0.7 s each. The server reads
    the hash from its database on each request, so the change applies at once."""
    import sqlite3

    from werkzeug.security import generate_password_hash

    cheap = generate_password_hash(AUTH_ADMIN_PASSWORD, method="pbkdf2:sha256:1000")
    with contextlib.closing(sqlite3.connect(auth_db)) as db, db:
        changed = db.execute(
            "UPDATE users SET password_hash = ? WHERE username = ?", (cheap, AUTH_ADMIN_USER)
        ).rowcount
    assert changed == 1, f"{auth_db}: no admin user {AUTH_ADMIN_USER!r} to update"


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster owned by the ``postgres`` user: ``port``, its directory ``root``
    (data, socket, log) and ``uri(database)`` for SQLAlchemy with psycopg2 (trust auth on loopback)."""

    port: int
    root: Path

    def uri(self, database: str) -> str:
        """``postgresql+psycopg2://postgres@127.0.0.1:PORT/<database>``."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its ``uri``."""
        _as_postgres(
            [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q"]
            + ["-c", f'CREATE DATABASE "{name}"'],
            cwd=self.root,
        )
        return self.uri(name)

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and remove its directory."""
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data")]
            + ["-m", "fast", "-w", "stop"],
            cwd=self.root,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def postgres_missing() -> str | None:
    """Why PostgreSQL 15 cannot be started here, or None when it can."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 binaries not found under {PG_BIN} (apt-get install postgresql)"
    if shutil.which("runuser") is None:
        return "runuser not found (needed to run initdb as the postgres user)"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres system user"
    if os.geteuid() != 0:
        return "starting PostgreSQL as the postgres user needs root (runuser)"
    return None


def _as_postgres(cmd: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def start_postgres(*, timeout: float = 60.0) -> PostgresServer:
    """initdb + pg_ctl start as the postgres user in a fresh directory under the system temp dir
    (pytest's own temp dirs are private to root), listening on 127.0.0.1:PORT with its socket in
    that directory."""
    import pwd

    pw = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="detops-pg-"))
    os.chown(root, pw.pw_uid, pw.pw_gid)
    data = root / "data"
    try:
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            + ["--no-sync"],
            cwd=root,
        )
        port = free_port()
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "postgres.log")]
            + ["-w", "-t", str(int(timeout)), "start"],
            cwd=root,
        )
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return PostgresServer(port=port, root=root)


@dataclass
class MotoS3:
    """moto's S3 server in a thread: ``url``; ``stop()`` ends it."""

    url: str
    server: Any

    def stop(self) -> None:
        """Stop the server thread."""
        self.server.stop()


def start_moto_s3() -> MotoS3:
    """moto's ``ThreadedMotoServer`` on a free loopback port (accepts any credentials)."""
    import logging

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server.start()
    return MotoS3(url=f"http://127.0.0.1:{port}", server=server)


def chromium_missing() -> str | None:
    """Why a headless Chromium cannot be driven here, or None when it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} not found (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


def chromium_driver(user_data_dir: Path) -> Any:
    """A Selenium WebDriver for Debian's headless Chromium (no network beyond what the page asks)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={user_data_dir}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def wait_text(driver: Any, needles: list[str], *, timeout: float = 120.0) -> str:
    """The page body's text once every one of ``needles`` is in it (Selenium ``driver``), polled
    each second for ``timeout`` seconds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def seen(d: Any) -> str | bool:
        text = str(d.find_element(By.TAG_NAME, "body").text)
        return text if all(n in text for n in needles) else False

    return str(WebDriverWait(driver, timeout, poll_frequency=1.0).until(seen))


# `make mutation` runs pytest once per mutant: a fresh session each time, which would start its own
# MLflow server (about 15 s on 2 cores) for every mutant of the registry. `python -P tests/servers.py
# with-mlflow CMD...` starts one server, runs CMD with these two variables set, and stops it; the
# `mlflow_server` fixture then hands out that server instead of starting one.
SHARED_MLFLOW_URL = "DETOPS_TEST_MLFLOW_URL"
SHARED_MLFLOW_ROOT = "DETOPS_TEST_MLFLOW_ROOT"


def shared_mlflow_server() -> MlflowServer | None:
    """The server that ``with-mlflow`` started for this process tree, or None."""
    url, root = os.environ.get(SHARED_MLFLOW_URL), os.environ.get(SHARED_MLFLOW_ROOT)
    if not url or not root:
        return None
    return MlflowServer(url=url, root=Path(root), proc=None, own_root=False)


def _with_mlflow(cmd: list[str]) -> int:
    # a SIGTERM (or SIGHUP) to this process still stops the server: it unwinds through `finally`
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    server = start_mlflow_server()
    try:
        env = {**os.environ, SHARED_MLFLOW_URL: server.url, SHARED_MLFLOW_ROOT: str(server.root)}
        return subprocess.run(cmd, env=env, check=False).returncode
    finally:
        server.stop()


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "with-mlflow":
        sys.exit("usage: python -P tests/servers.py with-mlflow CMD [ARG ...]")
    sys.exit(_with_mlflow(sys.argv[2:]))
