"""The TensorRT 10 builder, calibrator and stamp against the recording double (no GPU here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from detops.deploy.tensorrt.build import INSTALL_HINT, build_engine, profile_shapes
from detops.deploy.tensorrt.calibrator import CalibrationFeed, batched
from detops.deploy.tensorrt.stamp import DeviceInfo, check_compatible, read_stamp, stamp_path
from detops.errors import DetopsError

T4 = DeviceInfo("Tesla T4", (7, 5))


def cpu_tensor(array: np.ndarray) -> object:
    """The calibrator's device step on a CPU: a torch tensor whose data_ptr() is host memory."""
    import torch

    return torch.from_numpy(array.copy())


def _calls(trt: ModuleType, name: str) -> list[dict]:
    return [d for n, d in trt.calls if n == name]


def _samples(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"images": rng.uniform(0, 255, (1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def test_fp16_build_sets_fp16_flag_profile_and_stamp(
    fake_trt: ModuleType, conv_onnx: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tiny.engine"
    report = build_engine(
        conv_onnx, out=out, precision="fp16", workspace_gb=2, min_batch=1, opt_batch=4, max_batch=8, device=T4
    )
    assert [d["flag"] for d in _calls(fake_trt, "IBuilderConfig.set_flag")] == ["FP16"]
    assert _calls(fake_trt, "Builder.create_network") == [{"flags": 0}]
    assert _calls(fake_trt, "IBuilderConfig.set_memory_pool_limit") == [
        {"pool": "WORKSPACE", "size": 2 << 30}
    ]
    assert _calls(fake_trt, "IOptimizationProfile.set_shape") == [
        {"input": "images", "min": (1, 3, 16, 16), "opt": (4, 3, 16, 16), "max": (8, 3, 16, 16)}
    ]
    assert not _calls(fake_trt, "IBuilderConfig.int8_calibrator")
    assert out.read_bytes().startswith(b"FAKETRT10")
    stamp = read_stamp(out)
    assert (stamp.precision, stamp.compute_capability, stamp.gpu_name) == ("fp16", "7.5", "Tesla T4")
    assert stamp.tensorrt_version == "10.3.0.26"
    import hashlib

    assert stamp.onnx_sha256 == hashlib.sha256(conv_onnx.read_bytes()).hexdigest()
    assert report.stamp == stamp_path(out) == tmp_path / "tiny.engine.json"


def test_fp32_build_sets_no_precision_flag(fake_trt: ModuleType, conv_onnx: Path, tmp_path: Path) -> None:
    build_engine(conv_onnx, out=tmp_path / "e", precision="fp32", device=T4)
    assert _calls(fake_trt, "IBuilderConfig.set_flag") == []


def test_int8_calibrator_fed_n_batches_of_the_right_shape_and_cache_written(
    fake_trt: ModuleType, conv_onnx: Path, tmp_path: Path
) -> None:
    samples = _samples(5)
    cache = tmp_path / "calib.cache"
    report = build_engine(
        conv_onnx,
        out=tmp_path / "int8.engine",
        precision="int8",
        calib_batches=batched(samples, 2),
        calib_batch_size=2,
        calib_cache=cache,
        device=T4,
        to_device=cpu_tensor,
    )
    assert {d["flag"] for d in _calls(fake_trt, "IBuilderConfig.set_flag")} == {"FP16", "INT8"}
    assert _calls(fake_trt, "IBuilderConfig.int8_calibrator") == [{"type": "IInt8EntropyCalibrator2"}]
    fed = _calls(fake_trt, "calibrator.get_batch")
    assert len(fed) == report.calibration_batches == 3  # ceil(5 / 2): the last batch is completed
    assert all(d["inputs"]["images"].shape == (2, 3, 16, 16) for d in fed)
    # The memory TensorRT read is the images, in order (the last batch wraps to the first image).
    got = np.concatenate([d["inputs"]["images"] for d in fed])
    want = np.concatenate([s["images"] for s in samples + samples[:1]])
    np.testing.assert_array_equal(got, want)
    assert cache.read_bytes().startswith(b"TRT-100-EntropyCalibration2")
    assert read_stamp(tmp_path / "int8.engine").precision == "int8"

    # A rebuild with the cache present skips calibration: no batch is asked for.
    fake_trt.calls.clear()
    again = build_engine(
        conv_onnx,
        out=tmp_path / "int8b.engine",
        precision="int8",
        calib_cache=cache,
        device=T4,
        to_device=cpu_tensor,
    )
    assert _calls(fake_trt, "calibrator.read_calibration_cache") == [{"hit": True}]
    assert again.calibration_batches == 0 and not _calls(fake_trt, "calibrator.get_batch")


def test_int8_without_data_or_cache_is_refused(fake_trt: ModuleType, conv_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(DetopsError, match="calibration"):
        build_engine(conv_onnx, out=tmp_path / "e", precision="int8", device=T4)
    assert not (tmp_path / "e").exists()


def test_second_build_reads_the_timing_cache(fake_trt: ModuleType, conv_onnx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    first = build_engine(
        conv_onnx, out=tmp_path / "a.engine", precision="fp16", timing_cache=cache, device=T4
    )
    assert not first.timing_cache_loaded
    assert _calls(fake_trt, "IBuilderConfig.create_timing_cache") == [{"bytes": b""}]
    saved = cache.read_bytes()
    assert saved == b"FAKECACHE:1"
    fake_trt.calls.clear()
    second = build_engine(
        conv_onnx, out=tmp_path / "b.engine", precision="fp16", timing_cache=cache, device=T4
    )
    assert second.timing_cache_loaded
    assert _calls(fake_trt, "IBuilderConfig.create_timing_cache") == [{"bytes": saved}]
    assert _calls(fake_trt, "IBuilderConfig.set_timing_cache") == [{"ignore_mismatch": False}]
    assert cache.read_bytes() == b"FAKECACHE:2"  # saved again after the second build


def test_parser_errors_name_the_node(make_fake_trt, conv_onnx: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_fake_trt(unsupported_ops=("Relu",))
    out = tmp_path / "e.engine"
    with pytest.raises(DetopsError) as exc:
        build_engine(conv_onnx, out=out, precision="fp16", device=T4)
    assert "node 1 (head/relu)" in str(exc.value) and "Relu" in str(exc.value)
    assert not out.exists() and not stamp_path(out).exists()


def test_stamp_with_another_compute_capability_is_refused(
    fake_trt: ModuleType, conv_onnx: Path, tmp_path: Path
) -> None:
    out = tmp_path / "e.engine"
    build_engine(conv_onnx, out=out, precision="fp16", device=T4)
    stamp = read_stamp(out)
    check_compatible(stamp, tensorrt_version="10.3.0.26", device=T4, source=str(out))  # same: accepted
    a100 = DeviceInfo("NVIDIA A100-SXM4-80GB", (8, 0))
    with pytest.raises(DetopsError) as exc:
        check_compatible(stamp, tensorrt_version="10.3.0.26", device=a100, source=str(out))
    msg = str(exc.value)
    assert "7.5" in msg and "Tesla T4" in msg and "8.0" in msg and "A100" in msg
    with pytest.raises(DetopsError, match=r"TensorRT 10\.3\.0\.26 \(this machine has 10\.5\.0"):
        check_compatible(stamp, tensorrt_version="10.5.0.18", device=T4, source=str(out))
    # A different build number of the same release is the same engine format.
    check_compatible(stamp, tensorrt_version="10.3.0.99", device=T4, source=str(out))


def test_bad_stamp_is_refused_naming_the_field(fake_trt: ModuleType, conv_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.engine"
    build_engine(conv_onnx, out=out, precision="fp16", device=T4)
    raw = json.loads(stamp_path(out).read_text())
    del raw["compute_capability"]
    stamp_path(out).write_text(json.dumps(raw))
    with pytest.raises(DetopsError, match="compute_capability"):
        read_stamp(out)
    stamp_path(out).unlink()
    with pytest.raises(DetopsError, match="no stamp"):
        read_stamp(out)


def test_without_tensorrt_the_build_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, conv_onnx: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(DetopsError) as exc:
        build_engine(conv_onnx, out=tmp_path / "e", device=T4)
    assert str(exc.value) == INSTALL_HINT and "pip install 'detops[trt]'" in INSTALL_HINT


def test_tensorrt_8_is_refused(make_fake_trt, conv_onnx: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_fake_trt(version="8.6.1")
    with pytest.raises(DetopsError, match="needs 10.x"):
        build_engine(conv_onnx, out=tmp_path / "e", device=T4)


def test_profile_shapes_only_batch_may_be_dynamic() -> None:
    assert profile_shapes("x", (-1, 3, 8, 8), min_batch=1, opt_batch=2, max_batch=4) == (
        (1, 3, 8, 8),
        (2, 3, 8, 8),
        (4, 3, 8, 8),
    )
    with pytest.raises(DetopsError, match="only the batch axis"):
        profile_shapes("x", (-1, 3, -1, 8), min_batch=1, opt_batch=1, max_batch=1)
    with pytest.raises(DetopsError, match="min <= opt <= max"):
        profile_shapes("x", (-1, 3), min_batch=4, opt_batch=2, max_batch=8)


def test_feed_rejects_wrong_batch_and_writes_cache_atomically(tmp_path: Path) -> None:
    feed = CalibrationFeed(
        [{"images": np.zeros((3, 1), np.float32)}],
        batch_size=2,
        cache_file=tmp_path / "c",
        to_device=cpu_tensor,
    )
    with pytest.raises(DetopsError, match="batch of 3, expected 2"):
        feed.next_pointers(["images"])
    assert feed.read_cache() is None
    feed.write_cache(b"table")
    assert feed.read_cache() == b"table"


def test_the_double_holds_code_to_the_tensorrt_10_api(fake_trt: ModuleType) -> None:
    """Removed TensorRT 8 API must fail on the double, or it could not catch code that uses it."""
    builder = fake_trt.Builder(fake_trt.Logger(fake_trt.Logger.WARNING))
    config = builder.create_builder_config()
    with pytest.raises(AttributeError):
        config.max_workspace_size = 1 << 30
    with pytest.raises(AttributeError):
        builder.max_batch_size = 8
    assert not hasattr(builder, "build_engine")
    with pytest.raises(TypeError):
        config.int8_calibrator = object()
