"""``--device auto``: CUDA when the machine has it, else the CPU; AMP follows the device."""

from __future__ import annotations

import pytest
import torch

from detops.cli import _validate as check
from detops.engine.distributed import resolve_device


@pytest.mark.parametrize(("cuda", "expected"), [(True, "cuda"), (False, "cpu")])
def test_auto_follows_cuda(monkeypatch: pytest.MonkeyPatch, cuda: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto") == expected
    assert check.device("auto") == expected
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda") == "cuda"


def test_a_training_on_auto_records_the_device_it_used(tmp_path, synth_root) -> None:
    from detops.engine.fit import fit

    summary = fit(
        "damo_yolo_tiny",
        data_root=synth_root,
        epochs=1,
        out_dir=tmp_path / "run",
        img_size=64,
        batch_size=4,
        workers=0,
        overrides={"augment": False, "progress": False},
    )
    import json

    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolved["device"] == expected and resolved["amp"] is (expected == "cuda")
    assert summary["variant"] == "damo_yolo_tiny"
