"""``dvc add`` + ``dvc push`` time for a synthetic dataset of 2,000 images against a moto S3 endpoint.

Everything happens in a temporary directory: a synthetic dataset (``detops.data.synth``), a fresh
git + DVC project, moto's ``ThreadedMotoServer`` on 127.0.0.1 (a random free port), and the remote
written by ``detops.data.versioning.configure_remote``. Validation is not timed here (see
``validate_bench.py``). Prints a table. Run: ``.venv/bin/python bench/dvc_bench.py [--images N]``.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._report import print_table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="total images (90%% train, 10%% val)")
    parser.add_argument("--size", type=int, default=320, help="nominal image side in pixels")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    from detops.data.synth import synthesize
    from detops.data.versioning import REMOTE_NAME, _repo, configure_remote, read_version
    from detops.settings import Settings

    rows: list[tuple[str, str]] = []
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per pushed object otherwise
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp) / "project"
            project.mkdir()
            subprocess.run(["git", "init", "-q"], cwd=project, check=True)
            subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
            n_val = max(1, args.images // 10)
            t = time.perf_counter()
            synthesize(
                project / "data", train=args.images - n_val, val=n_val, size=args.size, seed=0, progress=False
            )
            rows.append(("synthesise (not timed by DVC)", f"{time.perf_counter() - t:.1f} s"))
            files = [p for p in (project / "data").rglob("*") if p.is_file()]
            rows.append(
                ("dataset", f"{len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB")
            )
            settings = Settings(
                project_root=project,
                dvc_remote="s3",
                s3_bucket="detops-bench",
                s3_endpoint_url=f"http://127.0.0.1:{port}",
                aws_access_key_id="bench",
                aws_secret_access_key="bench-secret",
            )
            with _repo(project) as repo:
                t = time.perf_counter()
                repo.add([str(project / "data")])
                rows.append(("dvc add data", f"{time.perf_counter() - t:.1f} s"))
                configure_remote(repo, settings)
                t = time.perf_counter()
                pushed = repo.push(targets=[str(project / "data.dvc")], remote=REMOTE_NAME)
                rows.append((f"dvc push -> moto S3 ({pushed} objects)", f"{time.perf_counter() - t:.1f} s"))
            rows.append(("dataset version (dir md5)", read_version(project / "data.dvc")[0]))
    finally:
        server.stop()

    print_table(f"DVC add + push of {args.images} synthetic images to moto S3 on 127.0.0.1", rows)


if __name__ == "__main__":
    main()
