"""`detops train` and `detops evaluate CHECKPOINT --data ROOT --json` end to end on the tiny row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detops.cli import main


def test_train_then_evaluate_checkpoint(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "damo_yolo_tiny",
            "--data",
            str(synth_root),
            "--epochs",
            "1",
            "--img-size",
            "64",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--out",
            str(out),
            "--no-augment",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [line for line in captured.out.splitlines() if line.startswith("damo_yolo_tiny epoch 1/1 ")]
    assert len(lines) == 1 and "mAP" in lines[0]
    assert "epoch 1/1" not in captured.err  # the summary line once, on stdout (stderr: the bar)
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()

    code = main(["evaluate", str(out / "best.pt"), "--data", str(synth_root), "--split", "val", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stats = json.loads(captured.out)
    summary = json.loads((out / "summary.json").read_text())
    assert stats["AP"] == pytest.approx(summary["final"]["val/AP"], abs=1e-9)
    assert set(stats["per_class"]) == {
        c["name"]
        for c in json.loads((synth_root / "annotations" / "instances_val.json").read_text())["categories"]
    }

    # Resume a finished run with more epochs: continues from epoch 2.
    code = main(["train", "--resume", str(out), "--epochs", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
