"""``save_checkpoint`` is atomic: a write that fails or is killed half-way leaves the previous
checkpoint readable and bit-identical at its path, and no partial file there.

Both tests make ``torch.save`` write half of the real bytes before failing (or hanging until the
process is killed), so a ``save_checkpoint`` that wrote straight to the target would leave a
truncated, unreadable ``last.pt``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from detops.engine.checkpoint import read_checkpoint, save_checkpoint


def _payload(seed: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "variant": "damo_yolo_tiny",
        "epoch": seed,
        "model": {"w": torch.randn(64, 64, generator=gen), "b": torch.randn(64, generator=gen)},
        "best_map": 0.1 * seed,
    }


def _assert_is(path: Path, expected: dict[str, Any]) -> None:
    ckpt = read_checkpoint(path)
    assert ckpt["epoch"] == expected["epoch"] and ckpt["best_map"] == expected["best_map"]
    for key, value in expected["model"].items():
        torch.testing.assert_close(ckpt["model"][key], value, rtol=0, atol=0)


def test_failure_mid_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    first = _payload(1)
    save_checkpoint(path, first)
    real_save = torch.save

    def half_then_fail(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        buf = io.BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        with open(f, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError("disk full (injected)")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    _assert_is(path, first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # temporary removed


_KILLED_WRITER = textwrap.dedent(
    """
    import io, sys, time
    import torch
    from detops.engine.checkpoint import save_checkpoint

    real_save = torch.save

    def half_then_hang(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        with open(f, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
        print("writing", flush=True)
        time.sleep(600)

    torch.save = half_then_hang
    gen = torch.Generator().manual_seed(2)
    save_checkpoint(sys.argv[1], {"variant": "damo_yolo_tiny", "epoch": 2,
                                  "model": {"w": torch.randn(64, 64, generator=gen)}, "best_map": 0.2})
    """
)


def test_process_killed_during_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    first = _payload(1)
    save_checkpoint(path, first)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        proc.kill()  # SIGKILL mid-write: no handler, no cleanup runs
    finally:
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    _assert_is(path, first)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    # The half-written bytes live only in the killed writer's hidden temporary ...
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.pt.") and leftovers[0].endswith(".tmp")
    # ... which the next save removes.
    third = _payload(3)
    save_checkpoint(path, third)
    _assert_is(path, third)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
