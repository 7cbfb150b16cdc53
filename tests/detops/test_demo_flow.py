"""`detops demo --flow`: the demo's schedule maps onto the retrain flow's parameters."""

from __future__ import annotations

import pytest

from detops.cli.demo_flow import flow_epochs
from detops.demo import DEMO_RUNS, DemoConfig
from detops.presets import PRESETS, train_config


def test_the_demo_schedule_is_the_smoke_preset() -> None:
    assert flow_epochs(DEMO_RUNS) is None
    for variant, epochs in DEMO_RUNS:
        assert train_config(variant, preset="smoke")["epochs"] == epochs
    demo, smoke = DemoConfig(), PRESETS["smoke"]
    # no size of its own: each family trains at the preset's size, in the flow and without it
    assert demo.img_size is None
    assert (demo.batch_size, demo.workers, demo.eval_interval, demo.profile_seconds) == (
        smoke.batch_size,
        smoke.workers,
        smoke.eval_interval,
        smoke.profile_seconds,
    )


def test_one_epoch_count_for_every_variant() -> None:
    assert flow_epochs((("damo_yolo_t", 2), ("rtdetrv2_s", 2))) == 2
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        flow_epochs((("damo_yolo_t", 2), ("rtdetrv2_s", 3)))
