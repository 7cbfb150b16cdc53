"""The deploy stage of a training run, step by step, each result logged into the run's MLflow run.

The flow's tasks and ``detops demo --no-flow`` call these same three functions, so both produce the
same artifacts, figures and MLflow records. Each takes and returns plain dicts (what a Prefect task
can pass on): a run summary (``fit``'s, with ``run_id``), then an ``artifact`` dict. ``settings``
(default: the process settings) name the tracking store.

    >>> artifact = export_run(summary)                       # best.pt -> best.onnx, parity checked
    >>> evaluations = evaluate_run(artifact, backends=("ort", "openvino"), data_root="data")
    >>> profiles = {b: profile_run(artifact, backend=b) for b in ("ort", "openvino")}

``backend_artifacts`` gives the file each backend runs (the ONNX file, or a TensorRT engine built from
it where TensorRT and a GPU are here); the benchmarks profile what it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detops.errors import DetopsError

log = logging.getLogger(__name__)


def export_run(run: dict[str, Any], *, settings: Any = None) -> dict[str, Any]:
    """Export the best checkpoint of ``run`` to ONNX beside it at batch 1 (the CPU latency case) and
    log the parity errors into ``run["run_id"]`` (or the run recorded in its run directory);
    ``{"variant", "onnx", "checkpoint", "max_rel_error", "run_id"}``. On a machine without the run's
    directory (the training ran on another worker: its summary carries no local paths) the checkpoint
    comes from the MLflow run's artifacts, by run id."""
    from detops.deploy.exporting import export_artifact
    from detops.tracking.runs import fetch_run_artifact
    from detops.tracking.stages import log_export

    best = (run.get("checkpoints") or {}).get("best")
    if not best or not Path(best).is_file():  # trained elsewhere: by run id
        if not run.get("run_id"):
            raise DetopsError(f"{run['variant']}: no checkpoint here and no MLflow run to fetch it from")
        best = str(fetch_run_artifact(str(run["run_id"]), settings=settings))
    report, _ = export_artifact(best, batch=1)
    errors = dict(report.max_rel_error)
    run_id = log_export(
        best, run_id=run.get("run_id"), path=report.path, opset=report.opset, errors=errors, settings=settings
    )
    checked = report.parity_outputs or list(errors)
    log.info(
        "%-12s exported to ONNX (opset %d); ONNX Runtime against PyTorch: max relative error %.1e (%s)",
        run["variant"],
        report.opset,
        max((errors[k] for k in checked), default=0.0),
        ", ".join(checked),
    )
    return {
        "variant": run["variant"],
        "onnx": str(report.path),
        "checkpoint": best,
        "max_rel_error": errors,
        "run_id": run_id or run.get("run_id"),
    }


def evaluate_run(
    artifact: dict[str, Any],
    *,
    backends: Sequence[str],
    data_root: str,
    split: str = "val",
    settings: Any = None,
) -> dict[str, dict[str, Any]]:
    """COCO stats of ``artifact``'s ONNX file on each of ``backends``, each with its checkpoint's stats
    (scored once) as ``reference`` and the ``delta``, logged into its MLflow run; ``{backend: stats}``."""
    from detops.deploy.evaluate import evaluate_backends
    from detops.tracking.stages import log_evaluation

    out = evaluate_backends(
        artifact["onnx"],
        backends=backends,
        data_root=data_root,
        split=split,
        reference=artifact["checkpoint"],
    )
    for stats in out.values():
        log_evaluation(artifact["onnx"], run_id=artifact.get("run_id"), stats=stats, settings=settings)
    first = next(iter(out.values()))
    log.info(
        "%-12s mAP 50:95 on '%s': checkpoint %.4f, %s",
        artifact["variant"],
        split,
        first["reference"]["AP"],
        ", ".join(f"{b} {s['AP']:.4f} ({s['delta']['AP']:+.4f})" for b, s in out.items()),
    )
    return out


def profile_run(
    artifact: dict[str, Any], *, backend: str, seconds: float = 1.5, settings: Any = None
) -> dict[str, Any]:
    """``profile_runner`` of ``artifact``'s ONNX file (``export_run``'s dict, or any dict with
    ``onnx``) on ``backend`` at batch 1, logged into its MLflow run when known."""
    from detops.deploy.profile import profile_runner
    from detops.deploy.runners.base import load_runner
    from detops.tracking.stages import log_profile

    onnx = artifact["onnx"]
    result = profile_runner(
        load_runner(onnx, backend=backend), artifact=onnx, batch=1, warmup=3, seconds=seconds
    )
    log_profile(onnx, run_id=artifact.get("run_id"), result=result, settings=settings)
    log.info(
        "%-12s %s: median %.2f ms per image (model only, batch 1, %d runs)",
        artifact.get("variant", onnx),
        backend,
        result["model"]["median_ms"],
        result["model"]["n"],
    )
    return result


def backend_artifacts(
    onnx: str | Path, backends: Sequence[str], *, precision: str = "fp16"
) -> tuple[dict[str, str], dict[str, str]]:
    """({backend: file it runs}, {backend: why it cannot run here}) for ``backends``: the ONNX file
    for every backend but ``tensorrt``; for ``tensorrt`` a ``precision`` engine built beside the ONNX
    file when this machine has TensorRT and a CUDA GPU, else the reason it has not."""
    from detops.deploy.tensorrt.build import build_engine, tensorrt_status

    artifacts = {b: str(onnx) for b in backends if b != "tensorrt"}
    unavailable: dict[str, str] = {}
    if "tensorrt" in backends:
        status = tensorrt_status()
        if status["available"]:
            artifacts["tensorrt"] = str(build_engine(onnx, precision=precision).engine)
        else:
            unavailable["tensorrt"] = str(status["detail"])
    return artifacts, unavailable
