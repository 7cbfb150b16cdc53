"""The ``benchmark`` flow: the deploy stage alone for registry versions (what the ``t4`` pool runs)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.deploy import build_engine, profile, tensorrt_status
from tasks.registry import fetch_version, record_benchmark


@flow(name="benchmark")
def benchmark(
    versions: dict[str, int],
    backends: tuple[str, ...] = ("ort", "openvino", "tensorrt"),
    profile_seconds: float = 1.5,
) -> list[dict[str, Any]]:
    """Profile registry ``versions`` ({variant: version}) on ``backends`` at batch 1, tag each version
    with its latencies and publish the table. TensorRT runs only where it is installed with a GPU;
    elsewhere it is reported as unavailable."""
    fetched = [fetch_version(variant, version) for variant, version in versions.items()]
    trt = tensorrt_status() if "tensorrt" in backends else {"available": False, "detail": "not asked"}
    cpu = [b for b in backends if b != "tensorrt"]
    profiles = {b: [profile(f, backend=b, seconds=profile_seconds) for f in fetched] for b in cpu}
    if "tensorrt" in backends and trt["available"]:
        engines = [build_engine(f["onnx"]) for f in fetched]
        profiles["tensorrt"] = [
            profile({"onnx": e, "variant": f["variant"]}, backend="tensorrt", seconds=profile_seconds)
            for f, e in zip(fetched, engines, strict=True)
        ]
    unavailable = {} if trt["available"] or "tensorrt" not in backends else {"tensorrt": trt["detail"]}
    return record_benchmark(fetched, profiles, unavailable=unavailable)
