"""`detops engine build` on the command line: without TensorRT, and against the recording double."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from detops.cli import main
from detops.deploy.tensorrt.stamp import DeviceInfo, read_stamp


def test_without_tensorrt_one_line_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, conv_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["engine", "build", str(conv_onnx)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorRT is not installed" in err[0] and "pip install 'detops[trt]'" in err[0]


def test_build_command_writes_engine_and_stamp(
    fake_trt: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    conv_onnx: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import detops.deploy.tensorrt.build as build_module

    monkeypatch.setattr(build_module, "cuda_device", lambda: DeviceInfo("Tesla T4", (7, 5)))
    out = tmp_path / "m.engine"
    args = ["engine", "build", str(conv_onnx), "--out", str(out), "--max-batch", "4"]
    args += ["--timing-cache", str(tmp_path / "t.cache"), "--workspace-gb", "1"]
    assert main(args) == 0
    assert out.is_file() and read_stamp(out).max_batch == 4 and (tmp_path / "t.cache").is_file()
    assert f"stamp {out}.json" in capsys.readouterr().out
    flags = [d["flag"] for n, d in fake_trt.calls if n == "IBuilderConfig.set_flag"]
    assert flags == ["FP16"]  # the CLI's default precision
    assert main(["engine", "build", str(conv_onnx), "--calib-data", str(tmp_path)]) == 2
    assert "--calib-data goes with --precision int8" in capsys.readouterr().err
    assert main(["engine", "build", str(conv_onnx), "--precision", "int4", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
