"""One timing method for every backend: warm up, time runs, summarise; plus the environment record.

``time_runs`` is a pure function over a clock (a fake clock tests its statistics exactly).
``profile_runner`` times a runner twice on the same pre-allocated synthetic batch:

* ``model``: ``runner.infer(batch)`` only, the batch prepared once beforehand (no pre/post-processing);
* ``postprocess``: ``runner.postprocess(raw, batch)`` only, on the raw outputs of one ``infer``
  (Python NMS or top-k for a plain graph; cutting and rescaling for an end-to-end one);
* ``end_to_end``: ``runner(images)``: preprocessing (resize, layout, scale), inference and
  post-processing (NMS or top-k, boxes to original pixels, category ids).

``compare_end2end`` puts an end-to-end graph's profile beside its plain graph's: the end-to-end
model time (NMS inside the graph) against the plain model time plus its Python post-processing.

On CUDA each run is bracketed by CUDA events (the device's own timeline) after a synchronize. The
result is one JSON-ready dict that follows ``PROFILE_SCHEMA``.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detops.errors import DetopsError

PROFILE_FORMAT = "detops.profile/1"


@dataclass(frozen=True)
class Stats:
    """Summary of ``n`` timed runs of a batch of ``batch`` images; times in milliseconds.

    ``std_ms`` is the sample standard deviation (0 for one run); percentiles interpolate linearly
    between order statistics (numpy's default); ``throughput_ips`` is images per second over the
    timed runs: ``batch * n / sum(times)``.
    """

    n: int
    batch: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict of the fields."""
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(times_s: Sequence[float], *, batch: int = 1) -> Stats:
    """``Stats`` of run durations given in seconds."""
    n = len(times_s)
    if n == 0:
        raise ValueError("no timed runs to summarise")
    ms = [t * 1000.0 for t in times_s]
    mean = sum(ms) / n
    var = sum((x - mean) ** 2 for x in ms) / (n - 1) if n > 1 else 0.0
    total = sum(times_s)
    return Stats(
        n=n,
        batch=batch,
        median_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=mean,
        std_ms=math.sqrt(var),
        min_ms=min(ms),
        max_ms=max(ms),
        throughput_ips=batch * n / total if total > 0 else math.inf,
    )


def time_runs(
    fn: Callable[[], Any],
    *,
    clock: Callable[[], float],
    warmup: int,
    iters: int | None = None,
    seconds: float | None = None,
    sync: Callable[[], None] | None = None,
    batch: int = 1,
) -> Stats:
    """Call ``fn`` ``warmup`` times untimed, then time it and summarise.

    Each timed run is ``t0 = clock(); fn(); sync(); t1 = clock()`` (``clock`` in seconds). With
    ``iters`` exactly that many runs are timed; with ``seconds`` runs continue until the timed runs
    have spanned at least that long (at least one run). Exactly one of the two must be given.
    """
    if (iters is None) == (seconds is None):
        raise ValueError("give exactly one of iters and seconds")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if iters is not None and iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    times: list[float] = []
    spent = 0.0
    while True:
        t0 = clock()
        fn()
        if sync is not None:
            sync()
        t1 = clock()
        times.append(t1 - t0)
        spent += t1 - t0
        if iters is not None and len(times) >= iters:
            break
        if seconds is not None and spent >= seconds:
            break
    return summarize(times, batch=batch)


def cuda_event_clock() -> Callable[[], float]:
    """A clock on the CUDA timeline: each call records an event on the current stream, waits for it and
    returns seconds since the first event (differences of two calls are device time)."""
    import torch

    start = torch.cuda.Event(enable_timing=True)
    start.record()

    def clock() -> float:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        event.synchronize()
        return float(start.elapsed_time(event)) / 1000.0

    return clock


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return None
    cores = set()
    phys = core = None
    for line in text.splitlines() + [""]:
        if line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
        elif not line.strip() and core is not None:
            cores.add((phys, core))
            phys = core = None
    return len(cores) or None


def _gpu() -> tuple[str | None, str | None]:
    name = driver = None
    try:
        import torch

        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
    except Exception:  # a broken CUDA install must not stop a CPU profile
        name = None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            if out:
                first = out.splitlines()[0].split(",")
                name = name or first[0].strip()
                driver = first[-1].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return name, driver


def environment(*, threads: int | None) -> dict[str, Any]:
    """CPU model, logical/physical cores, the thread setting, GPU name and driver, library versions."""
    import torch

    gpu_name, gpu_driver = _gpu()
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": os.cpu_count() or 1,
        "cpu_cores_physical": _physical_cores(),
        "threads": threads,
        "gpu_name": gpu_name,
        "gpu_driver": gpu_driver,
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "detops": _version("detops"),
            "torch": torch.__version__,
            "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
            "openvino": _version("openvino"),
            "cuda": torch.version.cuda,
            "tensorrt": _version("tensorrt"),
        },
    }


def synthetic_images(count: int, *, orig_size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded random uint8 RGB images of ``orig_size`` (height, width)."""
    rng = np.random.default_rng(seed)
    h, w = orig_size
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(count)]


POSTPROCESS_ITERS = 50
"""Timed runs of the post-processing when a profile is timed by seconds."""


def profile_runner(
    runner: Any,
    *,
    artifact: str,
    batch: int = 1,
    warmup: int = 10,
    iters: int | None = None,
    seconds: float | None = None,
    orig_size: tuple[int, int] = (480, 640),
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``runner`` (a ``Runner``) at ``batch`` on synthetic images; a dict following ``PROFILE_SCHEMA``.

    ``iters``/``seconds`` apply to the model and end-to-end measurements (default: 50 iterations);
    the post-processing, host work of well under the model's time, runs ``iters`` times (50 when only
    ``seconds`` is given) rather than for ``seconds``: timing it for seconds would add that much to
    every profile (registration profiles each backend) for no better a median.
    """
    if batch < 1:
        raise DetopsError(f"--batch must be at least 1, got {batch}")
    if iters is None and seconds is None:
        iters = 50
    fixed = runner.meta.batch
    if fixed is not None and fixed != batch:
        raise DetopsError(
            f"{artifact}: the graph has a fixed batch of {fixed}; profile it with --batch {fixed}"
        )
    images = synthetic_images(batch, orig_size=orig_size, seed=seed)
    prepared = runner.prepare(images)
    cuda = runner.device == "cuda"
    clock = cuda_event_clock() if cuda else time.perf_counter
    sync = runner.synchronize
    model = time_runs(
        lambda: runner.infer(prepared),
        clock=clock,
        warmup=warmup,
        iters=iters,
        seconds=seconds,
        sync=sync,
        batch=batch,
    )
    raw = runner.infer(prepared)
    runner.synchronize()
    postprocess = time_runs(
        lambda: runner.postprocess(raw, prepared),
        clock=time.perf_counter,  # host work on host arrays, whatever the device
        warmup=warmup,
        iters=iters or POSTPROCESS_ITERS,
        batch=batch,
    )
    end_to_end = time_runs(
        lambda: runner(images),
        clock=clock,
        warmup=warmup,
        iters=iters,
        seconds=seconds,
        sync=sync,
        batch=batch,
    )
    meta = runner.meta
    return {
        "format": PROFILE_FORMAT,
        "artifact": artifact,
        "backend": runner.backend,
        "device": runner.device,
        "variant": meta.variant,
        "precision": getattr(runner, "precision", meta.precision),
        "input_size": meta.input_size,
        "batch": batch,
        "orig_size": list(orig_size),
        "method": {
            "warmup": warmup,
            "iters": iters,
            "seconds": seconds,
            "timer": "cuda_events" if cuda else "perf_counter",
            "model": "inference only, inputs prepared and allocated beforehand",
            "postprocess": "runner post-processing of one inference's raw outputs (host)",
            "end_to_end": "preprocessing + inference + post-processing, uint8 images in, detections out",
        },
        "end2end_graph": bool(meta.end2end),
        "model": model.to_dict(),
        "postprocess": postprocess.to_dict(),
        "end_to_end": end_to_end.to_dict(),
        "environment": environment(threads=runner.threads),
    }


def compare_end2end(end2end: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """Median times of an end-to-end graph's profile beside its plain graph's (both ``profile_runner``
    results of the same variant, backend, input size and batch).

    Returns ``{"end2end_model_ms", "plain_model_ms", "plain_postprocess_ms", "plain_model_plus_post_ms",
    "end2end_postprocess_ms", "end2end_end_to_end_ms", "plain_end_to_end_ms"}``.
    """
    for key in ("variant", "backend", "input_size", "batch"):
        if end2end[key] != plain[key]:
            raise DetopsError(f"the baseline's {key} is {plain[key]!r}, the artifact's {end2end[key]!r}")
    if not end2end.get("end2end_graph") or plain.get("end2end_graph"):
        raise DetopsError("compare an end-to-end graph (--end2end export) with its plain graph as --baseline")
    return {
        "end2end_model_ms": end2end["model"]["median_ms"],
        "plain_model_ms": plain["model"]["median_ms"],
        "plain_postprocess_ms": plain["postprocess"]["median_ms"],
        "plain_model_plus_post_ms": plain["model"]["median_ms"] + plain["postprocess"]["median_ms"],
        "end2end_postprocess_ms": end2end["postprocess"]["median_ms"],
        "end2end_end_to_end_ms": end2end["end_to_end"]["median_ms"],
        "plain_end_to_end_ms": plain["end_to_end"]["median_ms"],
    }


_STATS_FIGURES = ("median_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "throughput_ips")
_STATS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["n", "batch", *_STATS_FIGURES],
    "additionalProperties": False,
    "properties": {
        "n": {"type": "integer", "minimum": 1},
        "batch": {"type": "integer", "minimum": 1},
        **{k: {"type": "number", "minimum": 0} for k in _STATS_FIGURES},
    },
}

_NULLABLE_STR = {"type": ["string", "null"]}

PROFILE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "detops profile result",
    "type": "object",
    "required": [
        "format",
        "artifact",
        "backend",
        "device",
        "variant",
        "precision",
        "input_size",
        "batch",
        "orig_size",
        "method",
        "model",
        "end_to_end",
        "environment",
    ],
    "additionalProperties": False,
    "properties": {
        "format": {"const": PROFILE_FORMAT},
        "artifact": {"type": "string"},
        "backend": {"type": "string"},
        "device": {"enum": ["cpu", "cuda"]},
        "variant": {"type": "string"},
        "precision": {"type": "string"},
        "input_size": {"type": "integer", "minimum": 1},
        "batch": {"type": "integer", "minimum": 1},
        "orig_size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "method": {
            "type": "object",
            "required": ["warmup", "iters", "seconds", "timer", "model", "end_to_end"],
            "properties": {
                "warmup": {"type": "integer", "minimum": 0},
                "iters": {"type": ["integer", "null"]},
                "seconds": {"type": ["number", "null"]},
                "timer": {"enum": ["perf_counter", "cuda_events"]},
                "model": {"type": "string"},
                "postprocess": {"type": "string"},
                "end_to_end": {"type": "string"},
            },
        },
        "end2end_graph": {"type": "boolean"},
        "model": _STATS_SCHEMA,
        "postprocess": _STATS_SCHEMA,
        "end_to_end": _STATS_SCHEMA,
        "baseline": {"type": "object", "description": "the plain graph's profile result (--baseline)"},
        "comparison": {"type": "object", "additionalProperties": {"type": "number"}},
        "environment": {
            "type": "object",
            "required": [
                "cpu_model",
                "cpu_cores_logical",
                "cpu_cores_physical",
                "threads",
                "gpu_name",
                "gpu_driver",
                "platform",
                "versions",
            ],
            "properties": {
                "cpu_model": {"type": "string"},
                "cpu_cores_logical": {"type": "integer", "minimum": 1},
                "cpu_cores_physical": {"type": ["integer", "null"]},
                "threads": {"type": ["integer", "null"]},
                "gpu_name": _NULLABLE_STR,
                "gpu_driver": _NULLABLE_STR,
                "platform": {"type": "string"},
                "versions": {
                    "type": "object",
                    "required": ["python", "torch", "onnxruntime", "openvino", "cuda", "tensorrt"],
                    "additionalProperties": _NULLABLE_STR,
                },
            },
        },
    },
}
