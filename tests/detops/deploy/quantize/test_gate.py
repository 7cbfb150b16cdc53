"""`detops evaluate ARTIFACT --reference CHECKPOINT --max-drop D`: the accuracy gate of low-precision
artifacts (exit 1 and both mAPs printed when the artifact loses more than D of mAP 50:95)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detops.cli import main
from detops.deploy.accuracy_gate import accuracy_gate
from detops.errors import DetopsError
from detops.evaluation import STAT_NAMES


def _stats(ap: float, ap50: float) -> dict[str, Any]:
    values = [ap, ap50] + [0.0] * (len(STAT_NAMES) - 2)
    return {**dict(zip(STAT_NAMES, values, strict=True)), "stats": values, "per_class": {}}


def _result(artifact: tuple[float, float], reference: tuple[float, float]) -> dict[str, Any]:
    art, ref = _stats(*artifact), _stats(*reference)
    delta = {k: art[k] - ref[k] for k in STAT_NAMES}
    return {**art, "backend": "ort", "artifact": "q.onnx", "reference": ref, "delta": delta}


def test_gate_judges_map_50_95_not_ap50() -> None:
    # AP50 improved, AP (50:95) dropped by 0.02: the gate must look at AP.
    stats = _result(artifact=(0.30, 0.60), reference=(0.32, 0.50))
    assert not accuracy_gate(stats, max_drop=0.01).passed
    assert accuracy_gate(stats, max_drop=0.03).passed
    with pytest.raises(DetopsError) as exc:
        accuracy_gate(_stats(0.3, 0.5), max_drop=0.01)
    assert str(exc.value) == "--max-drop needs --reference CHECKPOINT to compare against"


@pytest.fixture
def fake_evaluation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    """Empty artifact/reference files and an ``evaluate_artifact`` giving mAP 0.400 vs 0.420."""
    import detops.deploy.evaluate as evaluate_module

    seen: dict[str, Any] = {}

    def fake(artifact: Any, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        assert kwargs["reference"] is not None
        return _result(artifact=(0.400, 0.7), reference=(0.420, 0.7))

    monkeypatch.setattr(evaluate_module, "evaluate_artifact", fake)
    (tmp_path / "q.onnx").write_bytes(b"")
    (tmp_path / "ref.pt").write_bytes(b"")
    return tmp_path / "q.onnx", tmp_path / "ref.pt"


def test_cli_gate_fails_beyond_the_drop_and_prints_both(
    fake_evaluation: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact, ref = fake_evaluation
    args = ["evaluate", str(artifact), "--data", str(tmp_path), "--reference", str(ref)]
    assert main([*args, "--max-drop", "0.01"]) == 1
    out = capsys.readouterr().out
    assert "accuracy gate FAILED" in out and "0.4000" in out and "0.4200" in out
    assert main([*args, "--max-drop", "0.05"]) == 0
    assert "accuracy gate passed" in capsys.readouterr().out


def test_cli_max_drop_needs_a_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "q.onnx").write_bytes(b"")
    assert main(["evaluate", str(tmp_path / "q.onnx"), "--data", str(tmp_path), "--max-drop", "0.01"]) == 2
    assert "--max-drop needs --reference" in capsys.readouterr().err
