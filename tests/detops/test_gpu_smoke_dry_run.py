"""``bench/gpu_smoke.py`` dry run on the CPU: every step of the script the first lent GPU will run
works here (training steps, finiteness check, export, ONNX Runtime timing, the table)."""

from __future__ import annotations

import pytest

from bench import gpu_smoke


def test_dry_run_fills_every_column(capsys: pytest.CaptureFixture[str]) -> None:
    rows = gpu_smoke.main(
        [
            "--device",
            "cpu",
            "--variants",
            "damo_yolo_tiny",
            "--steps",
            "1",
            "--size",
            "64",
            "--batch",
            "2",
            "--iters",
            "2",
        ]
    )
    (row,) = rows
    assert row["errors"] == [] and row["finite"] is True
    assert row["images_per_s"] > 0 and row["ort_ms"] > 0 and row["parity"] < 1e-3
    assert row["ort_provider"].startswith("CPU")
    table = capsys.readouterr().out.splitlines()
    assert table[-2].startswith("variant") and table[-1].startswith("damo_yolo_tiny")


def test_no_cuda_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_smoke.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device here"):
        gpu_smoke.main([])
