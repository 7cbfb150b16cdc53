"""``TimeLimit``: a training past its wall-time limit fails at the next optimizer step."""

from __future__ import annotations

import pytest

from detops.engine.callbacks import TimeLimit
from detops.errors import DetopsError


def test_time_limit_fails_only_past_the_limit() -> None:
    now = [100.0]
    limit = TimeLimit(60, clock=lambda: now[0])
    limit.on_train_start(config={}, run_dir="r")
    now[0] = 160.0  # exactly at the limit: still allowed
    limit.on_step_end(step=10, epoch=0, metrics={})
    now[0] = 160.5
    with pytest.raises(DetopsError, match=r"epoch 2, step 11: over its time limit of 60 s \(60 s\)") as info:
        limit.on_step_end(step=11, epoch=1, metrics={})
    assert info.value.exit_code == 1


def test_time_limit_starts_at_the_first_step_of_a_resumed_run() -> None:
    now = [0.0]
    limit = TimeLimit(5, clock=lambda: now[0])
    now[0] = 1000.0  # no on_train_start (a callback added mid-run): the clock starts here
    limit.on_step_end(step=1, epoch=3, metrics={})
    now[0] = 1004.0
    limit.on_step_end(step=2, epoch=3, metrics={})
