"""The profiler's statistics on a fake clock, and the profile JSON against its schema."""

from __future__ import annotations

import json
import math

import pytest

from detops.deploy.profile import (
    POSTPROCESS_ITERS,
    PROFILE_SCHEMA,
    percentile,
    profile_runner,
    summarize,
    time_runs,
)


class FakeClock:
    """A clock that only moves when the timed function runs: each call of ``fn`` takes the next duration."""

    def __init__(self, durations_s):
        self.now = 100.0
        self.durations = list(durations_s)
        self.calls = 0
        self.reads = 0

    def clock(self):
        self.reads += 1
        return self.now

    def fn(self):
        self.now += self.durations[self.calls]
        self.calls += 1


def test_time_runs_statistics_exact():
    # Two warm-up runs of 9 s must not be counted; then 1, 2, 3, 4, 100 ms.
    fake = FakeClock([9.0, 9.0, 0.001, 0.002, 0.003, 0.004, 0.100])
    synced = []
    stats = time_runs(fake.fn, clock=fake.clock, warmup=2, iters=5, sync=lambda: synced.append(1), batch=4)
    assert fake.calls == 7 and fake.reads == 10 and len(synced) == 7
    assert stats.n == 5 and stats.batch == 4
    assert stats.median_ms == pytest.approx(3.0)
    assert stats.p90_ms == pytest.approx(4.0 + 0.6 * 96.0)  # position 0.9 * 4 = 3.6
    assert stats.p99_ms == pytest.approx(4.0 + 0.96 * 96.0)
    assert stats.mean_ms == pytest.approx(22.0)
    expected_std = math.sqrt(sum((x - 22.0) ** 2 for x in [1, 2, 3, 4, 100]) / 4)
    assert stats.std_ms == pytest.approx(expected_std)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(100.0)
    assert stats.throughput_ips == pytest.approx(4 * 5 / 0.110)


def test_time_runs_by_seconds_stops_once_spanned():
    fake = FakeClock([0.3] * 10)
    stats = time_runs(fake.fn, clock=fake.clock, warmup=0, seconds=1.0)
    assert stats.n == 4  # 0.3, 0.6, 0.9, 1.2 >= 1.0
    with pytest.raises(ValueError, match="exactly one of iters and seconds"):
        time_runs(fake.fn, clock=fake.clock, warmup=0, iters=2, seconds=1.0)


def test_percentile_and_single_run():
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([1.0, 2.0], 25) == pytest.approx(1.25)
    one = summarize([0.004])
    assert (one.median_ms, one.p99_ms, one.std_ms) == (pytest.approx(4.0), pytest.approx(4.0), 0.0)


def test_profile_json_follows_schema(tiny_artifacts, capsys, tmp_path):
    import jsonschema

    from detops.cli import main
    from detops.deploy import load_runner

    runner = load_runner(tiny_artifacts["rtdetrv2_tiny"]["onnx"], backend="ort", threads=1)
    result = profile_runner(runner, artifact="a.onnx", batch=2, warmup=1, iters=3)
    jsonschema.validate(result, PROFILE_SCHEMA)
    assert result["model"]["n"] == 3 and result["end_to_end"]["batch"] == 2
    assert result["postprocess"]["n"] == 3
    # timed by seconds: the post-processing runs a fixed number of times instead of for that long
    timed = profile_runner(runner, artifact="a.onnx", batch=1, warmup=0, seconds=0.05)
    assert timed["postprocess"]["n"] == POSTPROCESS_ITERS
    assert result["environment"]["threads"] == 1 and result["environment"]["versions"]["onnxruntime"]
    broken = {k: v for k, v in result.items() if k != "end_to_end"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PROFILE_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**result, "model": {**result["model"], "median_ms": -1.0}}, PROFILE_SCHEMA)

    out = tmp_path / "p.json"
    code = main(
        [
            "profile",
            str(tiny_artifacts["damo_yolo_tiny"]["onnx"]),
            "--backend",
            "openvino",
            "--iters",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--json",
            "--out",
            str(out),
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    assert (
        code == 0
        and printed["backend"] == "openvino"
        and json.loads(out.read_text())["variant"] == "damo_yolo_tiny"
    )
    jsonschema.validate(printed, PROFILE_SCHEMA)
