"""The profiler piece by piece, on fakes: every figure, message, default and pass-through pinned.

A fake timeline stands in for the clocks (dyadic durations, so sums are exact), a fake runner for a
backend, fake ``/proc/cpuinfo`` text, ``nvidia-smi`` and CUDA events for the machine. Expected values
are worked out by hand (or by numpy's own generator for the synthetic images).
"""

from __future__ import annotations

import math
import subprocess
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from detops.deploy import profile
from detops.deploy.profile import (
    Stats,
    compare_end2end,
    cuda_event_clock,
    percentile,
    profile_runner,
    summarize,
    synthetic_images,
    time_runs,
)
from detops.errors import DetopsError

# --- percentile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 0, 7.0),
        ([7.0], 50, 7.0),
        ([7.0], 100, 7.0),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),  # unsorted in, order statistics out
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # position 1.5: halfway between 2 and 3
        ([10.0, 20.0, 30.0, 40.0, 50.0], 90, 46.0),  # position 3.6, between the last two
        ([10.0, 20.0, 30.0, 40.0, 50.0], 20, 18.0),  # position 0.8
        ([0.0, 100.0], 99, 99.0),
    ],
)
def test_percentile_interpolates_between_order_statistics(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected, abs=1e-12)


def test_percentile_refuses_no_values_and_q_outside_0_100() -> None:
    with pytest.raises(ValueError) as exc:
        percentile([], 50)
    assert str(exc.value) == "percentile of no values"
    for q in (-0.5, 100.5):
        with pytest.raises(ValueError) as exc:
            percentile([1.0], q)
        assert str(exc.value) == f"q must be within 0..100, got {q}"


# --- summarize and Stats ------------------------------------------------------------------------


def test_summarize_eleven_runs_every_figure() -> None:
    # 1, 2, ..., 11 ms: median 6; p90 at position 9.0 -> 10; p99 at 9.9 -> 10.9; sample std sqrt(110 / 10)
    stats = summarize([i / 1000.0 for i in range(1, 12)], batch=3)
    assert stats.to_dict() == pytest.approx(
        {
            "n": 11,
            "batch": 3,
            "median_ms": 6.0,
            "p90_ms": 10.0,
            "p99_ms": 10.9,
            "mean_ms": 6.0,
            "std_ms": math.sqrt(11.0),
            "min_ms": 1.0,
            "max_ms": 11.0,
            "throughput_ips": 3 * 11 / 0.066,
        }
    )
    assert sorted(stats.to_dict()) == sorted(
        [
            "n",
            "batch",
            "median_ms",
            "p90_ms",
            "p99_ms",
            "mean_ms",
            "std_ms",
            "min_ms",
            "max_ms",
            "throughput_ips",
        ]
    )
    assert isinstance(stats.n, int) and isinstance(stats.batch, int)


def test_summarize_defaults_to_batch_one_and_uses_the_sample_std() -> None:
    stats = summarize([0.002, 0.004])  # 2 ms and 4 ms
    assert stats.batch == 1
    assert stats.std_ms == pytest.approx(math.sqrt(2.0))  # ((1 + 1) / (2 - 1)) ** 0.5
    assert stats.throughput_ips == pytest.approx(2 / 0.006)
    assert stats.median_ms == pytest.approx(3.0) and stats.mean_ms == pytest.approx(3.0)


def test_summarize_one_run_and_zero_durations() -> None:
    one = summarize([0.25])
    assert one.std_ms == 0.0 and one.n == 1 and one.throughput_ips == pytest.approx(4.0)
    zero = summarize([0.0, 0.0])
    assert zero.throughput_ips == math.inf and zero.median_ms == 0.0 and zero.std_ms == 0.0


def test_summarize_refuses_no_runs() -> None:
    with pytest.raises(ValueError) as exc:
        summarize([])
    assert str(exc.value) == "no timed runs to summarise"


def test_stats_to_dict_is_every_field() -> None:
    stats = Stats(1, 2, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
    assert stats.to_dict() == {
        "n": 1,
        "batch": 2,
        "median_ms": 3.0,
        "p90_ms": 4.0,
        "p99_ms": 5.0,
        "mean_ms": 6.0,
        "std_ms": 7.0,
        "min_ms": 8.0,
        "max_ms": 9.0,
        "throughput_ips": 10.0,
    }


# --- time_runs on a fake timeline ---------------------------------------------------------------


class Timeline:
    """A clock that moves only when a fake call spends time; each call of ``fn`` spends the next duration."""

    def __init__(self, durations: list[float] | None = None, *, sync_s: float = 0.0) -> None:
        self.now = 0.0
        self.durations = list(durations or [])
        self.calls = 0
        self.syncs = 0
        self.sync_s = sync_s

    def clock(self) -> float:
        return self.now

    def fn(self) -> None:
        if self.calls >= len(self.durations):
            raise AssertionError("ran more often than the test allows")
        self.now += self.durations[self.calls]
        self.calls += 1

    def sync(self) -> None:
        self.now += self.sync_s
        self.syncs += 1


def test_time_runs_counts_warmup_and_iters_exactly_and_times_the_sync() -> None:
    # 3 warm-up runs of 1 s (untimed), then 4 timed runs of 1/8 s, each plus a 1/16 s synchronize.
    tl = Timeline([1.0] * 3 + [0.125] * 4 + [99.0], sync_s=0.0625)
    stats = time_runs(tl.fn, clock=tl.clock, warmup=3, iters=4, sync=tl.sync)
    assert tl.calls == 7 and tl.syncs == 7  # the warm-up runs synchronize too
    assert stats.n == 4 and stats.batch == 1  # batch defaults to 1
    assert stats.median_ms == pytest.approx(187.5) and stats.max_ms == pytest.approx(187.5)
    assert stats.throughput_ips == pytest.approx(4 / 0.75)


def test_time_runs_one_iteration_without_warmup_or_sync() -> None:
    tl = Timeline([0.5, 99.0])
    stats = time_runs(tl.fn, clock=tl.clock, warmup=0, iters=1, batch=8)
    assert tl.calls == 1 and stats.n == 1 and stats.batch == 8
    assert stats.median_ms == pytest.approx(500.0) and stats.throughput_ips == pytest.approx(16.0)


def test_time_runs_by_seconds_stops_when_exactly_spanned() -> None:
    # 0.25 + 0.25 == 0.5 exactly: ">= seconds" stops after two runs, not three
    tl = Timeline([0.25] * 5)
    stats = time_runs(tl.fn, clock=tl.clock, warmup=1, seconds=0.5)
    assert tl.calls == 3 and stats.n == 2
    assert stats.mean_ms == pytest.approx(250.0)


def test_time_runs_by_seconds_runs_at_least_once() -> None:
    tl = Timeline([2.0, 99.0])
    stats = time_runs(tl.fn, clock=tl.clock, warmup=0, seconds=1e-9)
    assert tl.calls == 1 and stats.n == 1 and stats.median_ms == pytest.approx(2000.0)


def test_time_runs_by_seconds_counts_the_sync_time() -> None:
    # each run 0.25 s of fn plus 0.25 s of synchronize: 1.0 s is spanned after two runs
    tl = Timeline([0.25] * 5, sync_s=0.25)
    stats = time_runs(tl.fn, clock=tl.clock, warmup=0, seconds=1.0, sync=tl.sync)
    assert stats.n == 2 and tl.syncs == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"warmup": 0}, "give exactly one of iters and seconds"),
        ({"warmup": 0, "iters": 2, "seconds": 1.0}, "give exactly one of iters and seconds"),
        ({"warmup": -1, "iters": 2}, "warmup must be >= 0, got -1"),
        ({"warmup": 0, "iters": 0}, "iters must be >= 1, got 0"),
        ({"warmup": 0, "seconds": 0.0}, "seconds must be > 0, got 0.0"),
        ({"warmup": 0, "seconds": -1.0}, "seconds must be > 0, got -1.0"),
    ],
)
def test_time_runs_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    tl = Timeline()
    with pytest.raises(ValueError) as exc:
        time_runs(tl.fn, clock=tl.clock, **kwargs)
    assert str(exc.value) == message
    assert tl.calls == 0


# --- CUDA events (faked) ------------------------------------------------------------------------


class FakeEvent:
    """``torch.cuda.Event`` stand-in: ``record`` stamps the fake device time (ms), ``elapsed_time`` differs."""

    device_ms = 0.0
    made: list[FakeEvent] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.stamp: float | None = None
        self.records = 0
        self.syncs = 0
        FakeEvent.made.append(self)

    def record(self) -> None:
        self.records += 1
        self.stamp = FakeEvent.device_ms

    def synchronize(self) -> None:
        self.syncs += 1

    def elapsed_time(self, other: FakeEvent) -> float:
        assert self.stamp is not None and other.stamp is not None
        return other.stamp - self.stamp


def test_cuda_event_clock_reads_seconds_on_the_device_timeline(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeEvent.made = []
    FakeEvent.device_ms = 10.0
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    clock = cuda_event_clock()
    assert len(FakeEvent.made) == 1 and FakeEvent.made[0].records == 1  # the start event
    FakeEvent.device_ms = 12.5
    assert clock() == pytest.approx(0.0025)
    FakeEvent.device_ms = 1010.0
    assert clock() == pytest.approx(1.0)
    assert len(FakeEvent.made) == 3
    assert all(e.kwargs == {"enable_timing": True} for e in FakeEvent.made)
    assert [(e.records, e.syncs) for e in FakeEvent.made[1:]] == [(1, 1), (1, 1)]


# --- the environment record ---------------------------------------------------------------------


def test_version_of_an_installed_and_a_missing_distribution() -> None:
    assert profile._version("numpy") == np.__version__
    assert profile._version("no-such-distribution-detops") is None


class FakeCpuinfo:
    """``open`` for the profile module: serves ``text`` for ``/proc/cpuinfo`` (or raises) and records paths."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.paths: list[str] = []

    def __call__(self, path: str, *args: Any, **kwargs: Any) -> Any:
        import io

        self.paths.append(path)
        if self.text is None:
            raise FileNotFoundError(path)
        return io.StringIO(self.text)


def _fake_cpuinfo(monkeypatch: pytest.MonkeyPatch, text: str | None) -> FakeCpuinfo:
    fake = FakeCpuinfo(text)
    monkeypatch.setattr(profile, "open", fake, raising=False)
    monkeypatch.setattr(profile.platform, "processor", lambda: "proc-fallback")
    monkeypatch.setattr(profile.platform, "machine", lambda: "machine-fallback")
    return fake


def test_cpu_model_is_the_first_model_name_after_its_first_colon(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Weird: CPU: v2 @ 2GHz  \nmodel name\t: Second\n"
    fake = _fake_cpuinfo(monkeypatch, text)
    assert profile._cpu_model() == "Weird: CPU: v2 @ 2GHz"
    assert fake.paths == ["/proc/cpuinfo"]


def test_cpu_model_falls_back_to_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cpuinfo(monkeypatch, None)  # no /proc/cpuinfo (macOS, Windows)
    assert profile._cpu_model() == "proc-fallback"
    _fake_cpuinfo(monkeypatch, "processor\t: 0\nHardware\t: BCM2835\n")  # no model name line
    assert profile._cpu_model() == "proc-fallback"
    monkeypatch.setattr(profile.platform, "processor", lambda: "")
    assert profile._cpu_model() == "machine-fallback"


# Two sockets of two cores, one with a hyperthread sibling: four physical cores. The ids carry colons
# so that only "everything after the first colon" tells the sockets and cores apart; the text starts
# with a blank line, has a double blank line and no blank line (nor newline) after its last block.
CPUINFO = (
    "\n"
    "processor\t: 0\nphysical id\t: p:0:q\ncore id\t\t: c:0:d\n\n"
    "processor\t: 1\nphysical id\t: p:0:q\ncore id\t\t: c:1:d\n\n\n"
    "processor\t: 2\nphysical id\t: p:0:q\ncore id\t\t: c:0:d\n\n"
    "processor\t: 3\nphysical id\t: p:1:q\ncore id\t\t: c:0:d\n\n"
    "processor\t: 4\nphysical id\t: p:1:q\ncore id\t\t: c:1:d"
)


def test_physical_cores_counts_distinct_socket_core_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_cpuinfo(monkeypatch, CPUINFO)
    assert profile._physical_cores() == 4
    assert fake.paths == ["/proc/cpuinfo"]


def test_physical_cores_without_core_ids_or_cpuinfo_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cpuinfo(monkeypatch, "processor\t: 0\n\nprocessor\t: 1\n\n")
    assert profile._physical_cores() is None
    _fake_cpuinfo(monkeypatch, None)
    assert profile._physical_cores() is None


def test_physical_cores_a_block_without_physical_id_is_not_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    # the second block has no physical id: its core is (None, "0"), not (socket "1", "0")
    _fake_cpuinfo(monkeypatch, "physical id\t: 1\ncore id\t: 0\n\ncore id\t: 0\n\n")
    assert profile._physical_cores() == 2


class FakeSmi:
    """``subprocess.run`` stand-in for ``nvidia-smi``: returns ``stdout`` (or raises ``error``), records calls."""

    def __init__(self, stdout: str = "", error: Exception | None = None) -> None:
        self.stdout = stdout
        self.error = error
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, cmd: Any, **kwargs: Any) -> Any:
        self.calls.append((cmd, kwargs))
        if self.error is not None:
            raise self.error
        return SimpleNamespace(stdout=self.stdout, returncode=0)


def _fake_gpu(
    monkeypatch: pytest.MonkeyPatch, *, torch_name: str | None, smi: FakeSmi | None
) -> list[str | None]:
    """Fake torch's CUDA query and ``nvidia-smi``; returns the names ``shutil.which`` was asked for."""
    asked: list[str | None] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: torch_name is not None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"{torch_name} #{index}")

    def which(name: str) -> str | None:
        asked.append(name)
        return "/opt/nv/nvidia-smi" if smi is not None and name == "nvidia-smi" else None

    monkeypatch.setattr(profile.shutil, "which", which)
    if smi is not None:
        monkeypatch.setattr(profile.subprocess, "run", smi)
    return asked


def test_gpu_none_without_cuda_or_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_gpu(monkeypatch, torch_name=None, smi=None)
    name, driver = profile._gpu()
    assert name is None and driver is None
    assert asked == ["nvidia-smi"]


def test_gpu_name_from_torch_device_zero_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, torch_name="Torch GPU", smi=None)
    name, driver = profile._gpu()
    assert name == "Torch GPU #0" and driver is None


def test_gpu_name_and_driver_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    smi = FakeSmi(" Smi GPU A , 550.54 \nSmi GPU B, 999.9\n")
    _fake_gpu(monkeypatch, torch_name=None, smi=smi)
    assert profile._gpu() == ("Smi GPU A", "550.54")  # the first GPU's line
    assert smi.calls == [
        (
            ["/opt/nv/nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            {"capture_output": True, "text": True, "timeout": 10, "check": True},
        )
    ]


def test_gpu_torch_name_wins_and_the_driver_is_the_last_field(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, torch_name="Torch GPU", smi=FakeSmi("Odd, Name, 535.1\n"))
    assert profile._gpu() == ("Torch GPU #0", "535.1")


@pytest.mark.parametrize(
    "error",
    [
        OSError("no exec"),
        subprocess.CalledProcessError(9, "nvidia-smi"),
        subprocess.TimeoutExpired("smi", 10),
    ],
)
def test_gpu_a_failing_nvidia_smi_keeps_the_torch_name(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    _fake_gpu(monkeypatch, torch_name="Torch GPU", smi=FakeSmi(error=error))
    name, driver = profile._gpu()
    assert name == "Torch GPU #0" and driver is None


def test_gpu_empty_nvidia_smi_output_and_a_broken_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, torch_name=None, smi=FakeSmi("  \n"))
    name, driver = profile._gpu()
    assert name is None and driver is None

    def broken() -> bool:
        raise RuntimeError("CUDA driver too old")

    _fake_gpu(monkeypatch, torch_name=None, smi=None)
    monkeypatch.setattr(torch.cuda, "is_available", broken)
    name, driver = profile._gpu()
    assert name is None and driver is None


def _fake_machine(
    monkeypatch: pytest.MonkeyPatch, versions: dict[str, str | None], cpu_count: int | None
) -> None:
    monkeypatch.setattr(profile, "_gpu", lambda: ("Fake GPU", "1.2.3"))
    monkeypatch.setattr(profile, "_cpu_model", lambda: "Fake CPU")
    monkeypatch.setattr(profile, "_physical_cores", lambda: 6)
    monkeypatch.setattr(profile, "_version", lambda dist: versions.get(dist))
    monkeypatch.setattr(profile.os, "cpu_count", lambda: cpu_count)
    monkeypatch.setattr(profile.platform, "platform", lambda: "Fake-OS-1.0")
    monkeypatch.setattr(profile.platform, "python_version", lambda: "3.99.0")


def test_environment_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {
        "detops": "d-1",
        "onnxruntime": "ort-1",
        "onnxruntime-gpu": "ort-gpu-1",
        "openvino": "ov-1",
        "tensorrt": "trt-1",
    }
    _fake_machine(monkeypatch, versions, cpu_count=12)
    assert profile.environment(threads=3) == {
        "cpu_model": "Fake CPU",
        "cpu_cores_logical": 12,
        "cpu_cores_physical": 6,
        "threads": 3,
        "gpu_name": "Fake GPU",
        "gpu_driver": "1.2.3",
        "platform": "Fake-OS-1.0",
        "versions": {
            "python": "3.99.0",
            "detops": "d-1",
            "torch": torch.__version__,
            "onnxruntime": "ort-1",
            "openvino": "ov-1",
            "cuda": torch.version.cuda,
            "tensorrt": "trt-1",
        },
    }


def test_environment_falls_back_to_onnxruntime_gpu_and_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_machine(monkeypatch, {"onnxruntime-gpu": "ort-gpu-1"}, cpu_count=None)
    env = profile.environment(threads=None)
    assert env["versions"]["onnxruntime"] == "ort-gpu-1"
    assert env["cpu_cores_logical"] == 1 and env["threads"] is None
    assert env["versions"]["openvino"] is None and env["versions"]["detops"] is None


def test_environment_of_this_machine_reads_the_real_sources() -> None:
    import onnxruntime

    env = profile.environment(threads=1)
    assert env["versions"]["torch"] == torch.__version__
    assert env["versions"]["onnxruntime"] == onnxruntime.__version__
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]


# --- synthetic images ---------------------------------------------------------------------------


def test_synthetic_images_are_seeded_uint8_of_orig_size() -> None:
    ref = np.random.default_rng(0)
    want = [ref.integers(0, 256, size=(5, 7, 3), dtype=np.uint8) for _ in range(3)]
    got = synthetic_images(3, orig_size=(5, 7))  # seed defaults to 0
    assert len(got) == 3
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.uint8 and g.shape == (5, 7, 3)
        np.testing.assert_array_equal(g, w)
    other = np.random.default_rng(4).integers(0, 256, size=(2, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(synthetic_images(1, orig_size=(2, 3), seed=4)[0], other)
    # 0..255 all reachable over enough pixels (the upper bound is exclusive 256)
    big = synthetic_images(1, orig_size=(64, 64))[0]
    assert big.min() == 0 and big.max() == 255


# --- profile_runner on a fake runner ------------------------------------------------------------

INFER_S, SYNC_S, POST_S, CALL_S = 2.0**-8, 2.0**-10, 2.0**-9, 2.0**-6  # dyadic: exact sums


class FakeRunner:
    """A ``Runner`` whose every step spends a fixed time on a ``Timeline`` and records what it got."""

    def __init__(
        self,
        tl: Timeline,
        *,
        device: str = "cpu",
        fixed_batch: int | None = None,
        end2end: Any = False,
        precision: str | None = None,
    ) -> None:
        self.tl = tl
        self.device = device
        self.backend = "fakebackend"
        self.threads = 3
        self.meta = SimpleNamespace(
            batch=fixed_batch, variant="v_tiny", precision="fp32", input_size=96, end2end=end2end
        )
        if precision is not None:
            self.precision = precision
        self.prepared = object()
        self.raw = {"raw": "outputs"}
        self.log: dict[str, int] = {"prepare": 0, "infer": 0, "postprocess": 0, "call": 0, "sync": 0}
        self.images: list[np.ndarray] | None = None

    def prepare(self, images: list[np.ndarray]) -> object:
        self.log["prepare"] += 1
        self.images = images
        return self.prepared

    def infer(self, prepared: object) -> dict[str, str]:
        assert prepared is self.prepared
        self.log["infer"] += 1
        self.tl.now += INFER_S
        return self.raw

    def postprocess(self, raw: object, prepared: object) -> None:
        assert raw is self.raw and prepared is self.prepared
        self.log["postprocess"] += 1
        self.tl.now += POST_S

    def __call__(self, images: list[np.ndarray]) -> None:
        assert images is self.images
        self.log["call"] += 1
        self.tl.now += CALL_S

    def synchronize(self) -> None:
        self.log["sync"] += 1
        self.tl.now += SYNC_S


def _fake_clocks(monkeypatch: pytest.MonkeyPatch, tl: Timeline) -> list[dict[str, Any]]:
    """perf_counter reads the timeline; the CUDA clock reads it at double speed (to tell them apart);
    ``environment`` is stubbed and records its arguments."""
    env_calls: list[dict[str, Any]] = []
    monkeypatch.setattr(profile, "time", SimpleNamespace(perf_counter=tl.clock))
    monkeypatch.setattr(profile, "cuda_event_clock", lambda: lambda: 2.0 * tl.now)

    def environment(**kwargs: Any) -> dict[str, Any]:
        env_calls.append(kwargs)
        return {"stub": True}

    monkeypatch.setattr(profile, "environment", environment)
    return env_calls


def _stats(n: int, batch: int, each_s: float) -> dict[str, Any]:
    """Hand-made ``Stats.to_dict()`` of ``n`` runs of ``each_s`` seconds each."""
    ms = each_s * 1000.0
    figures = dict.fromkeys(("median_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"), ms)
    return {"n": n, "batch": batch, **figures, "std_ms": 0.0, "throughput_ips": batch / each_s}


METHOD_TEXTS = {
    "model": "inference only, inputs prepared and allocated beforehand",
    "postprocess": "runner post-processing of one inference's raw outputs (host)",
    "end_to_end": "preprocessing + inference + post-processing, uint8 images in, detections out",
}


def test_profile_runner_defaults_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    tl = Timeline()
    env_calls = _fake_clocks(monkeypatch, tl)
    runner = FakeRunner(tl)
    result = profile_runner(runner, artifact="art.onnx")
    # warmup 10 and iters 50 by default; one more inference gives the post-processing its raw outputs
    assert runner.log == {"prepare": 1, "infer": 61, "postprocess": 60, "call": 60, "sync": 121}
    assert runner.images is not None and len(runner.images) == 1  # batch 1
    want = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    np.testing.assert_array_equal(runner.images[0], want)  # seed 0, 480 x 640
    figures = {k: result.pop(k) for k in ("model", "postprocess", "end_to_end")}
    assert figures["model"] == pytest.approx(_stats(50, 1, INFER_S + SYNC_S))
    assert figures["postprocess"] == pytest.approx(_stats(50, 1, POST_S))  # not synchronized
    assert figures["end_to_end"] == pytest.approx(_stats(50, 1, CALL_S + SYNC_S))
    assert result == {
        "format": "detops.profile/1",
        "artifact": "art.onnx",
        "backend": "fakebackend",
        "device": "cpu",
        "variant": "v_tiny",
        "precision": "fp32",
        "input_size": 96,
        "batch": 1,
        "orig_size": [480, 640],
        "method": {"warmup": 10, "iters": 50, "seconds": None, "timer": "perf_counter", **METHOD_TEXTS},
        "end2end_graph": False,
        "environment": {"stub": True},
    }
    assert env_calls == [{"threads": 3}]


def test_profile_runner_passes_its_settings_on(monkeypatch: pytest.MonkeyPatch) -> None:
    tl = Timeline()
    _fake_clocks(monkeypatch, tl)
    runner = FakeRunner(tl, fixed_batch=2, end2end=1, precision="int8")
    result = profile_runner(runner, artifact="b.onnx", batch=2, warmup=1, iters=3, orig_size=(6, 8), seed=5)
    assert runner.log == {"prepare": 1, "infer": 5, "postprocess": 4, "call": 4, "sync": 9}
    ref = np.random.default_rng(5)
    assert runner.images is not None and len(runner.images) == 2
    for img in runner.images:
        np.testing.assert_array_equal(img, ref.integers(0, 256, size=(6, 8, 3), dtype=np.uint8))
    assert result["model"] == pytest.approx(_stats(3, 2, INFER_S + SYNC_S))
    assert result["postprocess"] == pytest.approx(_stats(3, 2, POST_S))
    assert result["end_to_end"] == pytest.approx(_stats(3, 2, CALL_S + SYNC_S))
    assert result["method"] == {
        "warmup": 1,
        "iters": 3,
        "seconds": None,
        "timer": "perf_counter",
        **METHOD_TEXTS,
    }
    assert (result["batch"], result["orig_size"], result["end2end_graph"]) == (2, [6, 8], True)
    assert result["precision"] == "int8"  # the runner's own precision wins over the metadata's


def test_profile_runner_by_seconds_times_the_postprocessing_fifty_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tl = Timeline()
    _fake_clocks(monkeypatch, tl)
    runner = FakeRunner(tl)
    result = profile_runner(runner, artifact="c.onnx", warmup=0, seconds=0.02)
    # model runs of 5/1024 s: 4 make 0.01953125 < 0.02, the 5th crosses; end-to-end runs of 17/1024 s: 2
    assert result["model"]["n"] == 5 and result["end_to_end"]["n"] == 2
    assert result["postprocess"]["n"] == 50
    assert runner.log["postprocess"] == 50 and runner.log["infer"] == 6
    assert result["method"] == {
        "warmup": 0,
        "iters": None,
        "seconds": 0.02,
        "timer": "perf_counter",
        **METHOD_TEXTS,
    }


def test_profile_runner_on_cuda_times_model_and_end_to_end_with_cuda_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tl = Timeline()
    _fake_clocks(monkeypatch, tl)
    runner = FakeRunner(tl, device="cuda")
    result = profile_runner(runner, artifact="d.onnx", warmup=0, iters=2)
    assert result["method"]["timer"] == "cuda_events" and result["device"] == "cuda"
    assert result["model"]["median_ms"] == pytest.approx(2000.0 * (INFER_S + SYNC_S))  # the CUDA clock
    assert result["end_to_end"]["median_ms"] == pytest.approx(2000.0 * (CALL_S + SYNC_S))
    assert result["postprocess"]["median_ms"] == pytest.approx(1000.0 * POST_S)  # host clock


def test_profile_runner_refuses_a_bad_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    tl = Timeline()
    _fake_clocks(monkeypatch, tl)
    with pytest.raises(DetopsError) as exc:
        profile_runner(FakeRunner(tl), artifact="e.onnx", batch=0)
    assert str(exc.value) == "--batch must be at least 1, got 0" and exc.value.exit_code == 2
    with pytest.raises(DetopsError) as exc:
        profile_runner(FakeRunner(tl, fixed_batch=4), artifact="e.onnx", iters=1)
    assert str(exc.value) == "e.onnx: the graph has a fixed batch of 4; profile it with --batch 4"
    assert exc.value.exit_code == 2


# --- compare_end2end ----------------------------------------------------------------------------


def _profile(*, end2end: bool | None, model: float, post: float, e2e: float, **over: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "variant": "v",
        "backend": "ort",
        "input_size": 64,
        "batch": 1,
        "model": {"median_ms": model},
        "postprocess": {"median_ms": post},
        "end_to_end": {"median_ms": e2e},
        **over,
    }
    if end2end is not None:
        result["end2end_graph"] = end2end
    return result


def test_compare_end2end_every_figure() -> None:
    e2e = _profile(end2end=True, model=5.0, post=0.25, e2e=9.0)
    plain = _profile(end2end=False, model=4.0, post=1.5, e2e=8.0)
    assert compare_end2end(e2e, plain) == {
        "end2end_model_ms": 5.0,
        "plain_model_ms": 4.0,
        "plain_postprocess_ms": 1.5,
        "plain_model_plus_post_ms": 5.5,
        "end2end_postprocess_ms": 0.25,
        "end2end_end_to_end_ms": 9.0,
        "plain_end_to_end_ms": 8.0,
    }
    # a plain profile without the end2end_graph key (older files) is a plain graph
    assert compare_end2end(e2e, _profile(end2end=None, model=4.0, post=1.5, e2e=8.0))["plain_model_ms"] == 4.0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("variant", "w", "the baseline's variant is 'w', the artifact's 'v'"),
        ("backend", "openvino", "the baseline's backend is 'openvino', the artifact's 'ort'"),
        ("input_size", 32, "the baseline's input_size is 32, the artifact's 64"),
        ("batch", 2, "the baseline's batch is 2, the artifact's 1"),
    ],
)
def test_compare_end2end_refuses_a_different_baseline(key: str, value: Any, message: str) -> None:
    e2e = _profile(end2end=True, model=5.0, post=0.25, e2e=9.0)
    plain = _profile(end2end=False, model=4.0, post=1.5, e2e=8.0, **{key: value})
    with pytest.raises(DetopsError) as exc:
        compare_end2end(e2e, plain)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("artifact", "baseline"), [(False, False), (None, False), (True, True), (False, True)]
)
def test_compare_end2end_needs_an_end2end_artifact_and_a_plain_baseline(
    artifact: bool | None, baseline: bool
) -> None:
    with pytest.raises(DetopsError) as exc:
        compare_end2end(
            _profile(end2end=artifact, model=5.0, post=0.25, e2e=9.0),
            _profile(end2end=baseline, model=4.0, post=1.5, e2e=8.0),
        )
    assert (
        str(exc.value) == "compare an end-to-end graph (--end2end export) with its plain graph as --baseline"
    )
