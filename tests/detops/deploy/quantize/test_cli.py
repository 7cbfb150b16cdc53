"""`detops quantize` command line: bad input is one line and exit 2, before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from detops.cli import main


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "kl"], "--method must be one of minmax, entropy, percentile, got 'kl'"),
        (["--calib-images", "0"], "--calib-images must be at least 1, got 0"),
        (["--quantize-all", "--exclude", "a"], "give either --exclude NODE or --quantize-all, not both"),
    ],
)
def test_bad_options_are_one_line(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.onnx"
    args = ["quantize", str(tmp_path / "m.onnx"), "--calib-data", str(tmp_path), "--out", str(out)]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"]
    assert not out.exists()


def test_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", str(tmp_path / "m.onnx"), "--calib-data", str(tmp_path)]) == 2
    assert f"{tmp_path / 'm.onnx'}: no such ONNX file" in capsys.readouterr().err
