"""The ``benchmark`` flow: registry versions measured on the worker that runs it (what the ``t4``
pool runs): latency on each backend, and the TensorRT engine's mAP, tagged onto each version."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.registry import benchmark_version, publish_benchmark


@flow(name="benchmark")
def benchmark(
    versions: dict[str, int],
    backends: tuple[str, ...] = ("ort", "openvino", "tensorrt"),
    profile_seconds: float = 1.5,
    data: str | None = None,
) -> list[dict[str, Any]]:
    """Benchmark registry ``versions`` ({variant: version}) on ``backends`` at batch 1 and publish the
    table. TensorRT runs only where it is installed with a GPU (elsewhere it is reported as
    unavailable); there its engine's mAP is measured on each version's own dataset version, pulled
    from the DVC remote, or found in ``data`` (a directory on the worker, for a dataset that was not
    pushed: COCO val2017 of ``reproduce``)."""
    results = [
        benchmark_version(variant, version, backends=backends, seconds=profile_seconds, data=data)
        for variant, version in versions.items()
    ]
    return publish_benchmark(results)
