"""The ``reproduce`` flow: the authors' release files on COCO val2017, through the platform's own
import, export, artifact evaluation, profiling and registration, then the comparison report."""

from __future__ import annotations

from typing import Any

from prefect import flow

from detops.registry.report import COCO_VAL2017
from tasks.deploy import dispatch_tensorrt
from tasks.registry import find_release_files, register_official, report


@flow(name="reproduce")
def reproduce(
    coco: str,
    weights_dir: str,
    variants: list[str] | None = None,
    backends: tuple[str, ...] = ("ort", "openvino", "tensorrt"),
    profile_seconds: float = 1.5,
) -> dict[str, Any]:
    """Register every release file of ``variants`` (default: the table's eight) found in
    ``weights_dir``, evaluated on COCO val2017 under ``coco``; TensorRT (latency and the engine's
    mAP, with COCO at the same path on that worker) on the ``t4`` pool when it has a worker; the
    report with the published figure beside each measured one."""
    found = find_release_files(coco, weights_dir, variants or ["all"])
    cpu = tuple(b for b in backends if b != "tensorrt")
    registered = [
        register_official(
            variant,
            weights,
            data_root=coco,
            backends=cpu,
            profile_seconds=profile_seconds,
            eval_data=COCO_VAL2017,
        )
        for variant, weights in found.items()
    ]
    tensorrt = (
        # COCO is on no DVC remote: the t4 worker finds it at the same path (a shared mount)
        dispatch_tensorrt({r["variant"]: r["version"] for r in registered}, data=coco)
        if "tensorrt" in backends
        else {"dispatched": False, "detail": "TensorRT not asked"}
    )
    notes = () if tensorrt["dispatched"] else (str(tensorrt["detail"]),)
    out = report([], registered=registered, notes=notes)
    return {"registered": registered, "tensorrt": tensorrt, "report": out}
