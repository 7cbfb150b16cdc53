"""End-to-end latency of the served detector (image bytes in, detections out, batch 1) next to model-only time.

    cd <repo> && .venv/bin/python -m bench.serve_latency                        # untrained damo_yolo_t, 640 px
    .venv/bin/python -m bench.serve_latency --model models:/detops-damo_yolo_t@champion --iters 30
    .venv/bin/python -m bench.serve_latency --variant damo_yolo_tiny --img-size 128 --no-http

The model is the registry's pyfunc detector (``detops.registry.pyfunc``): either ``--model`` (a model URI
or directory, e.g. a champion; the settings' tracking store resolves ``models:/``) or, by default, an
untrained ``--variant`` exported at ``--img-size`` and saved as that detector in a temporary directory.
One 640x480 JPEG (a synthetic scene, quality 90) is the request. Four rows, timed in rounds (each
round runs every row once, so on a shared machine all rows see the same contention; ``--warmup``
untimed rounds, ``--iters`` timed) and summarised like the profiler's (``detops.deploy.profile.summarize``),
ONNX Runtime on the CPU at its default threads:

* ``model only``: ``runner.infer`` on the prepared input (what ``detops profile`` calls model);
* ``runner end-to-end``: decoded uint8 image -> detections (resize, inference, post-processing);
* ``pyfunc predict``: ``model.predict`` of a one-row DataFrame holding the base64 JPEG -> the row of
  detections (base64 and JPEG decoding, MLflow's schema enforcement, the runner, the row);
* ``HTTP /invocations``: the same request as ``dataframe_split`` JSON POSTed on loopback to
  ``mlflow models serve --env-manager local`` of the same model (the command ``detops serve`` runs),
  answer parsed (adds JSON, the web server and the loopback round trip).

An untrained model produces few detections above the score threshold (``--score``), so the row
building and JSON costs here are lower bounds for a trained model with many objects per image.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def request_image(*, seed: int = 0) -> bytes:
    """A 640x480 JPEG (quality 90) of a synthetic scene: shapes on a textured background."""
    from detops.data.synth import render_image

    rgb, _ = render_image(np.random.default_rng(seed), size=560, empty=False, crowd=False)
    rgb = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(encoded.tobytes())


def saved_model(variant: str, *, img_size: int | None, workdir: Path, example: bytes) -> str:
    """Export untrained ``variant`` and save it as the registry's pyfunc detector; returns its directory."""
    import mlflow.pyfunc

    from detops.deploy.exporting import export_artifact
    from detops.registry.pyfunc import model_kwargs

    report, _ = export_artifact(variant, out=workdir / f"{variant}.onnx", image_size=img_size)
    path = workdir / "model"
    mlflow.pyfunc.save_model(str(path), **model_kwargs(report.path, example_image=example))
    return str(path)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes) -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.loads(resp.read())


def _start_server(uri: str, *, port: int) -> subprocess.Popen[bytes]:
    import detops
    from detops.registry.serve import serve_command, serve_env
    from detops.settings import get_settings

    env = serve_env(get_settings())
    checkout = str(Path(detops.__file__).resolve().parents[1])  # this checkout's detops, as the bench's
    env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        serve_command(uri, port=port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_ping(url: str, proc: subprocess.Popen[bytes], *, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"no answer from {url}/ping within {timeout:.0f} s")


def interleaved(paths: dict[str, Any], *, warmup: int, iters: int) -> dict[str, Any]:
    """Time every path once per round, ``warmup`` untimed rounds then ``iters`` timed ones, so that on a
    shared machine each path sees the same contention; each path's times summarised like the profiler's."""
    from detops.deploy.profile import summarize

    for _ in range(warmup):
        for fn in paths.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(iters):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: summarize(values) for name, values in times.items()}


def measure(
    uri: str, *, image: bytes, score: float, warmup: int, iters: int, http: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Time the four rows (see the module docstring) for the detector at ``uri``."""
    import mlflow.pyfunc
    import pandas as pd

    from detops.data.dataset import decode_image_bytes
    from detops.deploy.profile import environment

    loaded = mlflow.pyfunc.load_model(uri)
    runner = loaded.unwrap_python_model()._runner("ort")
    rgb = decode_image_bytes(image)
    prepared = runner.prepare([rgb])
    b64 = base64.b64encode(image).decode("ascii")
    frame = pd.DataFrame({"image": [b64]})
    params = {"score": score}
    answer = loaded.predict(frame, params=params).iloc[0]
    assert answer["error"] is None, answer["error"]
    paths: dict[str, Any] = {
        "model only": lambda: runner.infer(prepared),
        "runner end-to-end": lambda: runner([rgb]),
        "pyfunc predict": lambda: loaded.predict(frame, params=params),
    }
    proc = None
    try:
        if http:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = _start_server(uri, port=port)
            _wait_ping(url, proc)
            body = json.dumps(
                {"dataframe_split": {"columns": ["image"], "data": [[b64]]}, "params": params}
            ).encode()
            served = _post(f"{url}/invocations", body)["predictions"][0]
            assert served["scores"] == answer["scores"], "the server answers differently from predict"
            paths["HTTP /invocations"] = lambda: _post(f"{url}/invocations", body)
        timed = interleaved(paths, warmup=warmup, iters=iters)
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    rows = [{"path": name, **stats.to_dict()} for name, stats in timed.items()]
    info = {
        "variant": runner.meta.variant,
        "input_size": runner.meta.input_size,
        "request_bytes": len(image),
        "detections": len(answer["scores"]),
        "score": score,
        "environment": environment(threads=None),
    }
    return rows, info


def main() -> None:
    """Parse arguments, build or load the detector, time it, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="model URI or directory (default: an untrained --variant)"
    )
    parser.add_argument("--variant", default="damo_yolo_t")
    parser.add_argument("--img-size", type=int, default=None, help="export size (default: the variant's)")
    parser.add_argument("--score", type=float, default=0.3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--no-http", action="store_true", help="skip the served-over-HTTP row")
    parser.add_argument("--json", type=Path, default=None, help="also write rows and environment here")
    args = parser.parse_args()

    image = request_image()
    with tempfile.TemporaryDirectory(prefix="detops-serve-bench-") as tmp:
        uri = args.model or saved_model(
            args.variant, img_size=args.img_size, workdir=Path(tmp), example=image
        )
        rows, info = measure(
            uri, image=image, score=args.score, warmup=args.warmup, iters=args.iters, http=not args.no_http
        )
    env = info["environment"]
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{info['variant']} at {info['input_size']} px, batch 1, ORT on the CPU (default threads)",
        caption=f"request: one 640x480 JPEG, {info['request_bytes']} bytes; answer: {info['detections']} "
        f"detections >= {info['score']}; {env['cpu_model']}, {env['cpu_cores_logical']} logical cores",
    )
    for col in ("path", "median ms", "p90 ms", "min ms", "runs", "vs model only"):
        table.add_column(col, justify="left" if col == "path" else "right")
    base = rows[0]["median_ms"]
    for row in rows:
        table.add_row(
            row["path"],
            f"{row['median_ms']:.2f}",
            f"{row['p90_ms']:.2f}",
            f"{row['min_ms']:.2f}",
            str(row["n"]),
            f"+{row['median_ms'] - base:.2f} ms",
        )
    Console(width=160).print(table)
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, **info}, indent=2))


if __name__ == "__main__":
    main()
