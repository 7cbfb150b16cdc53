"""``detops train`` on N processes through ``torchrun``, watched from a parent process (a flow run).

``train_distributed(nproc, train_args, run_dir=..., on_line=...)`` starts ``torchrun --standalone
--nproc_per_node N -m detops.cli train ...`` as a subprocess, hands every line the ranks print to
``on_line`` (a Prefect run's logger), and returns rank 0's ``summary.json`` from the run directory. A
rank that fails ends the launch with a ``DetopsError`` carrying the last ``error:`` line any rank
printed (or its last line); torchrun stops the other ranks itself. One process trains in the caller's
process instead (``fit``), with no launcher.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from detops.errors import DetopsError

TORCHRUN = (sys.executable, "-m", "torch.distributed.run")
"""torchrun itself (the ``torchrun`` console script runs this module), with this interpreter."""


def torchrun_command(
    nproc: int, train_args: Sequence[str], *, program: Sequence[str] = ("-m", "detops.cli", "train")
) -> list[str]:
    """The command line: one node (``--standalone``: a local rendezvous), ``nproc`` processes, each
    running ``program`` with ``train_args``."""
    if nproc < 1:
        raise DetopsError(f"gpus / nproc_per_node must be at least 1, got {nproc}")
    # --tee 3: torchrun prints every rank's stdout and stderr a whole line at a time, prefixed
    # ``[default<rank>]:`` (without it, lines the ranks write at once can run into each other)
    return [*TORCHRUN, "--standalone", "--nproc_per_node", str(nproc), "--tee", "3", *program, *train_args]


RANK_PREFIX = re.compile(r"^\[default(\d+)\]:")


def split_rank(line: str) -> tuple[int | None, str]:
    """(rank, text) of a line torchrun printed for a rank; (None, line) for its own lines."""
    match = RANK_PREFIX.match(line)
    return (int(match.group(1)), line[match.end() :]) if match else (None, line)


def train_args(
    config: dict[str, Any],
    *,
    data_root: str | Path,
    resume: bool = False,
    tags: dict[str, str] | None = None,
    upload_last: bool = False,
) -> list[str]:
    """``detops train`` arguments for ``config`` (``detops.presets.train_config``'s dict: variant,
    epochs, img_size, batch_size, workers, seed, overrides with eval_interval) on ``data_root``; with
    ``resume`` the run continues from the run directory given as ``--out`` (see ``train_distributed``);
    ``upload_last`` adds ``--upload-last``. Options the CLI does not have are refused rather than
    dropped."""
    overrides = dict(config.get("overrides") or {})
    eval_interval = int(overrides.pop("eval_interval", 1))
    overrides.pop("progress", None)  # a log line per epoch either way
    if overrides:
        raise DetopsError(f"cannot pass {sorted(overrides)} to `detops train` under torchrun")
    args = [] if resume else [str(config["variant"]), "--data", str(data_root)]
    args += ["--epochs", str(int(config["epochs"]))]
    if not resume:
        args += ["--batch-size", str(int(config["batch_size"])), "--workers", str(int(config["workers"]))]
        args += ["--seed", str(int(config.get("seed", 0))), "--eval-interval", str(eval_interval)]
        if config.get("img_size") is not None:
            args += ["--img-size", str(int(config["img_size"]))]
    args += ["--device", str(config.get("device", "auto"))]
    if upload_last:
        args.append("--upload-last")
    for key, value in sorted((tags or {}).items()):
        args += ["--tag", f"{key}={value}"]
    return args


_ROOT_CAUSE = "Root Cause (first observed failure)"
_FIELD = re.compile(r"^\s*(rank|exitcode|traceback)\s*:\s*(.*)$")


def root_cause(lines: Sequence[str]) -> tuple[int, str] | None:
    """(rank, what ended it) from torchrun's failure summary: the rank of its "Root Cause (first
    observed failure)" section and that section's traceback line (``Signal 9 (SIGKILL) received by
    PID 123``), or its exit code when the traceback is torchrun's placeholder; None without one."""
    try:
        start = max(i for i, line in enumerate(lines) if _ROOT_CAUSE in line)
    except ValueError:
        return None
    fields: dict[str, str] = {}
    for line in lines[start + 1 :]:
        if set(line.strip()) <= set("="):
            if fields:
                break
            continue
        match = _FIELD.match(split_rank(line)[1])
        if match:
            fields.setdefault(match.group(1), match.group(2).strip())
    rank = re.match(r"\d+", fields.get("rank", ""))
    if rank is None:
        return None
    cause = fields.get("traceback", "")
    if not cause or cause.startswith("To enable traceback"):
        cause = f"exit code {fields.get('exitcode', '?').split(' (pid')[0]}"
    return int(rank.group()), cause


def last_error(lines: Sequence[str]) -> str:
    """The line a failed launch is reported by. The rank torchrun names as the root cause (the first
    rank that failed; the others usually fail because it did): its last ``error:`` line (the CLI's
    one-line errors), else what ended it (a signal, an exit code). Without torchrun's summary: the
    last ``error:`` line of any rank, named ``rank N: ...``, else the last line that is not
    torchrun's own failure banner, else a fixed text."""
    cause = root_cause(lines)
    if cause is not None:
        rank, ended = cause
        own = [
            text.strip()
            for r, text in map(split_rank, lines)
            if r == rank and text.lstrip().startswith("error:")
        ]
        return f"rank {rank}: {own[-1] if own else ended}"
    for line in reversed(lines):
        rank_of, text = split_rank(line)
        if text.lstrip().startswith("error:"):
            return text.strip() if rank_of is None else f"rank {rank_of}: {text.strip()}"
    for line in reversed(lines):
        rank_of, text = split_rank(line)
        text = text.strip()
        if text and not set(text) <= set("=-*") and "ChildFailedError" not in text:
            return text if rank_of is None else f"rank {rank_of}: {text}"
    return "no output from any rank"


def run_torchrun(
    command: Sequence[str],
    *,
    on_line: Callable[[str], None],
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> None:
    """Run ``command`` (``torchrun_command``'s), passing each line of its combined output to
    ``on_line`` as it comes; ``DetopsError`` with ``last_error`` when it exits non-zero."""
    seen: list[str] = []
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
    )
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            seen.append(line)
            del seen[:-200]  # the tail is enough to report a failure
            on_line(line)
    finally:
        code = proc.wait()
    if code != 0:
        raise DetopsError(
            f"training under torchrun failed (exit code {code}): {last_error(seen)}", exit_code=1
        )


def train_distributed(
    nproc: int,
    args: Sequence[str],
    *,
    run_dir: str | Path,
    resume: bool = False,
    on_line: Callable[[str], None],
    env: dict[str, str] | None = None,
    program: Sequence[str] = ("-m", "detops.cli", "train"),
) -> dict[str, Any]:
    """``detops train`` (``program``) with ``args`` (``train_args``'s) on ``nproc`` processes writing
    into ``run_dir`` (``--out``; ``--resume`` it with ``resume``); returns rank 0's summary."""
    run_dir = Path(run_dir)
    where = ["--resume", str(run_dir)] if resume else ["--out", str(run_dir)]
    command = torchrun_command(nproc, [*args, *where], program=program)
    run_torchrun(command, on_line=on_line, env=env)
    summary = run_dir / "summary.json"
    if not summary.is_file():
        raise DetopsError(f"training under torchrun ended without {summary}", exit_code=1)
    return dict(json.loads(summary.read_text()))
