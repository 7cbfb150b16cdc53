"""The torchrun launcher for real (``python -m torch.distributed.run``, two local ranks) on a stand-in
rank program: the command, the streamed lines, rank 0's summary, and a failing rank's error line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from detops.engine.launch import (
    TORCHRUN,
    last_error,
    root_cause,
    split_rank,
    torchrun_command,
    train_args,
    train_distributed,
)
from detops.errors import DetopsError

# What each rank runs: prints a line naming its rank; rank 0 writes the summary into --out; with
# FAIL_RANK set, that rank fails the way the CLI does (one `error:` line on stderr, exit 2).
RANK_PROGRAM = """
import json, os, sys
from pathlib import Path
rank = int(os.environ["RANK"]); world = int(os.environ["WORLD_SIZE"])
out = Path(sys.argv[sys.argv.index("--out") + 1])
print(f"rank {rank} of {world} args {sys.argv[1:3]}", flush=True)
if os.environ.get("FAIL_RANK") == str(rank):
    print(f"error: instances_train.json: image 7 not found (rank {rank})", file=sys.stderr, flush=True)
    sys.exit(2)
if rank == 0:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"variant": sys.argv[1], "world": world}))
"""


@pytest.fixture
def program(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "rank.py"
    script.write_text(RANK_PROGRAM)
    return (str(script),)


def test_the_command_is_torchrun_standalone() -> None:
    cmd = torchrun_command(4, ["damo_yolo_t", "--epochs", "3"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and tuple(cmd[:3]) == TORCHRUN
    assert cmd[3:] == [
        "--standalone",
        "--nproc_per_node",
        "4",
        "--tee",
        "3",
        "-m",
        "detops.cli",
        "train",
        "damo_yolo_t",
        "--epochs",
        "3",
    ]
    with pytest.raises(DetopsError, match="at least 1, got 0"):
        torchrun_command(0, [])


def test_two_ranks_stream_lines_and_rank_zero_returns_the_summary(tmp_path: Path, program) -> None:
    lines: list[str] = []
    summary = train_distributed(
        2, ["damo_yolo_t", "--epochs"], run_dir=tmp_path / "run", on_line=lines.append, program=program
    )
    assert summary == {"variant": "damo_yolo_t", "world": 2}
    # whole lines, each with its rank (torchrun --tee), even when both ranks print at once
    ranked = [split_rank(line) for line in lines]
    assert {(rank, text) for rank, text in ranked if rank is not None} == {
        (0, "rank 0 of 2 args ['damo_yolo_t', '--epochs']"),
        (1, "rank 1 of 2 args ['damo_yolo_t', '--epochs']"),
    }


def test_a_failing_rank_fails_the_launch_with_its_error_line(tmp_path: Path, program) -> None:
    lines: list[str] = []
    with pytest.raises(DetopsError) as caught:
        train_distributed(
            2,
            ["damo_yolo_t"],
            run_dir=tmp_path / "run",
            on_line=lines.append,
            program=program,
            env={"FAIL_RANK": "1"},
        )
    assert str(caught.value).startswith(
        "training under torchrun failed (exit code 1): rank 1: error: instances_train.json"
    )
    assert "(rank 1)" in str(caught.value) and caught.value.exit_code == 1


def test_last_error_prefers_the_error_line_over_torchrun_banners() -> None:
    lines = [
        "epoch 1/3 loss 2.0",
        "error: bad thing",
        "Traceback ...",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
        "======",
    ]
    assert last_error(lines) == "error: bad thing"
    assert (
        last_error(["loading", "RuntimeError: CUDA out of memory", "======"])
        == "RuntimeError: CUDA out of memory"
    )
    assert last_error([]) == "no output from any rank"
    assert (
        last_error(["[default0]:epoch 1", "[default1]:error: disk full", "====="])
        == "rank 1: error: disk full"
    )


def test_a_missing_summary_is_an_error(tmp_path: Path) -> None:
    script = tmp_path / "quiet.py"
    script.write_text("print('nothing written')\n")
    with pytest.raises(DetopsError, match="ended without .*summary.json"):
        train_distributed(2, [], run_dir=tmp_path / "run", on_line=lambda _: None, program=(str(script),))


def test_train_args_carry_the_resolved_config() -> None:
    from detops.presets import train_config

    config = train_config("damo_yolo_t", preset="smoke", epochs=4)
    args = train_args(config, data_root="/data/v1", tags={"prefect.flow_run_id": "abc"})
    assert args == [
        "damo_yolo_t",
        "--data",
        "/data/v1",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--seed",
        "0",
        "--eval-interval",
        "2",
        "--img-size",
        "160",
        "--device",
        "auto",
        "--tag",
        "prefect.flow_run_id=abc",
    ]
    # a resumed run takes its settings from its run directory
    assert train_args(config, data_root="/x", resume=True) == ["--epochs", "4", "--device", "auto"]
    # a train flow run keeps its state in the artifact store
    assert train_args(config, data_root="/x", resume=True, upload_last=True)[-1] == "--upload-last"
    with pytest.raises(DetopsError, match=r"cannot pass \['lr'\]"):
        train_args({**config, "overrides": {"lr": 0.1}}, data_root="/x")


def test_the_cli_accepts_what_train_args_builds(tmp_path: Path, synth_root: Path) -> None:
    """The arguments go through the real `detops train` parser and into the run's config (one
    process: the parser and the config are what this test is about)."""
    import json

    from detops.cli import main

    config = {
        "variant": "damo_yolo_tiny",
        "epochs": 1,
        "img_size": 64,
        "batch_size": 4,
        "workers": 0,
        "seed": 3,
        "overrides": {"eval_interval": 1},
    }
    args = train_args(config, data_root=synth_root, tags={"k": "v"}, upload_last=True)
    assert main(["train", *args, "--no-track", "--out", str(tmp_path / "run"), "--no-augment"]) == 0
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (resolved["seed"], resolved["img_size"], resolved["batch_size"], resolved["eval_interval"]) == (
        3,
        64,
        4,
        1,
    )


# torchrun's summary when rank 1 was SIGKILLed and rank 0 then failed on its broken collective
# (the format of torch 2.13's ChildFailedError, from a real run)
KILLED = """\
[default0]:error: unexpected DistBackendError: Connection closed by peer
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
detops.cli FAILED
-------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-06_22:03:24
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 28975)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_22:03:24
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 28976)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 28976
=======================================================""".splitlines()


def test_the_root_cause_rank_is_reported_not_the_rank_that_failed_because_of_it() -> None:
    assert root_cause(KILLED) == (1, "Signal 9 (SIGKILL) received by PID 28976")
    assert last_error(KILLED) == "rank 1: Signal 9 (SIGKILL) received by PID 28976"
    # the root-cause rank's own error line wins over how it ended
    with_line = ["[default1]:error: disk full", *KILLED]
    assert last_error(with_line) == "rank 1: error: disk full"
    # torchrun's placeholder traceback: the exit code instead
    exited = [
        line.replace("Signal 9 (SIGKILL) received by PID 28976", "To enable traceback see: x")
        for line in KILLED
    ]
    assert last_error(exited) == "rank 1: exit code -9"
    assert root_cause(["no summary"]) is None
