"""Benchmark a registry version on the machine that runs this: what the ``benchmark`` flow runs on the
``t4`` pool, and ``detops benchmark --variants V --version N`` by hand.

For version ``version`` of ``detops-<variant>``:

1. its ONNX file, from the registry (cached under home);
2. an artifact per asked backend (``backend_artifacts``): the ONNX file for the CPU backends, a
   TensorRT engine built from it for ``tensorrt`` when TensorRT and a CUDA GPU are here (otherwise
   that backend is unavailable, with the reason);
3. the model latency of each at batch 1 (``profile_run``, logged into the version's MLflow run);
4. for the backends only this machine measures (``WORKER_BACKENDS``: TensorRT), the artifact's mAP
   50:95 by the same evaluation as at registration, on the same dataset version and split: pulled
   from the DVC remote by version, or the directory ``data`` when its content is that version. A
   dataset that cannot be found here leaves that mAP unmeasured, with the reason;
5. those figures as version tags (``detops.map.<backend>``, ``detops.latency_ms.<backend>`` and its
   environment), written once every measurement is done, so that promotion and selection can judge
   a policy on ``tensorrt``. CPU figures stay those measured at registration, on the machine the CPU
   gates were judged for.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.registry import tags as T

log = logging.getLogger(__name__)

WORKER_BACKENDS: tuple[str, ...] = ("tensorrt",)
"""Backends measured by the benchmark (a GPU worker), not at registration: their latency and mAP are
written onto the version."""


@dataclass(frozen=True)
class VersionBenchmark:
    """What ``benchmark_version`` measured for one version; ``as_dict`` is what a flow passes on."""

    variant: str
    version: int
    latency_ms: dict[str, float]
    """{backend: median model latency at batch 1}."""
    map: dict[str, float]
    """{backend: mAP 50:95 of its artifact}, for the ``WORKER_BACKENDS`` measured here."""
    map_checkpoint: float | None
    """The version's checkpoint mAP on the same data (``detops.map.checkpoint``, from registration)."""
    unavailable: dict[str, str]
    """{backend: why it was not measured at all}."""
    map_unavailable: dict[str, str] = field(default_factory=dict)
    """{backend: why its latency was measured but its mAP was not}."""
    tags: dict[str, str] = field(default_factory=dict)
    """The tags written onto the version."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def version_data_root(
    tags: dict[str, str], *, what: str, data: str | Path | None = None, settings: Any
) -> Path:
    """The local directory of the dataset version a registry version was evaluated on (its
    ``detops.dataset_version`` tag): ``data`` when its content is that version, else the version
    pulled from the DVC remote. ``what`` names the version in errors. ``DetopsError`` (one line) for a
    ``data`` that is not that version, or a version that cannot be pulled."""
    from detops.data.versioning import pull_version
    from detops.tracking.provenance import dataset_version

    version = tags.get(T.DATASET_VERSION, "")
    if not version:
        raise DetopsError(f"{what}: no {T.DATASET_VERSION} tag, so its dataset is unknown")
    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise DetopsError(f"--data {root}: dataset directory not found")
        found = dataset_version(root, project_root=settings.project_root).digest
        if found != version:
            raise DetopsError(
                f"--data {root}: dataset version {found}, but {what} was evaluated on {version}"
            )
        return root
    if tags.get("detops.dataset_tracked_by") == "content":
        raise DetopsError(
            f"{what}: dataset {version} is not DVC-versioned (identified by content); "
            "give --data, a directory holding it on this machine"
        )
    return pull_version(version, settings=settings)


def benchmark_version(
    variant: str,
    version: int,
    *,
    backends: Sequence[str] = ("ort", "openvino", "tensorrt"),
    seconds: float = 1.5,
    data: str | Path | None = None,
    precision: str = "fp16",
    settings: Any = None,
    client: Any = None,
) -> VersionBenchmark:
    """Steps 1-5 of the module docstring for version ``version`` of ``detops-<variant>``.

    ``data``: a directory on this machine holding the version's dataset (needed when that dataset
    was not pushed to a DVC remote, e.g. COCO val2017 registered by ``detops reproduce``).
    ``precision``: of the TensorRT engine. Raises ``DetopsError`` (one line, nothing tagged) for an
    unknown backend, model or version, or a ``data`` that is not the version's dataset."""
    from detops.deploy.evaluate import evaluate_artifact
    from detops.deploy.pipeline import backend_artifacts, profile_run
    from detops.registry.client import model_name, open_registry
    from detops.registry.latency_only import check_backends
    from detops.registry.register import latency_tags
    from detops.registry.uri import resolve_model_uri
    from detops.settings import get_settings
    from detops.tracking.stages import log_evaluation

    check_backends(backends)
    if not seconds > 0:
        raise DetopsError(f"--seconds must be > 0, got {seconds}")
    settings = settings or get_settings()
    with open_registry(settings, client=client) as client:
        name = model_name(variant)
        what = f"{name} version {version}"
        tags = client.get_version(name, version).tags
        run_id = tags.get(T.RUN_ID) or None
        # A wrong --data is bad input: refused before anything is built or measured.
        root: Path | None = None
        worker = [b for b in backends if b in WORKER_BACKENDS]
        map_unavailable: dict[str, str] = {}
        if worker:
            try:
                root = version_data_root(tags, what=what, data=data, settings=settings)
            except DetopsError as exc:
                if data is not None:
                    raise
                map_unavailable = {b: str(exc) for b in worker}

        onnx = resolve_model_uri(f"models:/{name}/{int(version)}", want="onnx", settings=settings)
        artifacts, unavailable = backend_artifacts(onnx, backends, precision=precision)
        map_unavailable = {b: why for b, why in map_unavailable.items() if b in artifacts}
        profiles = {
            backend: profile_run(
                {"onnx": path, "variant": variant, "run_id": run_id},
                backend=backend,
                seconds=seconds,
                settings=settings,
            )
            for backend, path in artifacts.items()
        }
        measured: dict[str, float] = {}
        split = tags.get(T.EVAL_SPLIT) or "val"
        for backend in (b for b in worker if b in artifacts and b not in map_unavailable):
            assert root is not None
            stats = evaluate_artifact(artifacts[backend], backend=backend, data_root=root, split=split)
            log_evaluation(artifacts[backend], run_id=run_id, stats=stats, settings=settings)
            measured[backend] = float(stats["AP"])

        new_tags = latency_tags({b: p for b, p in profiles.items() if b in WORKER_BACKENDS})
        new_tags.update({T.map_tag(b): T.fmt_float(ap) for b, ap in measured.items()})
        if new_tags:
            client.set_version_tags(name, version, new_tags)
        result = VersionBenchmark(
            variant=variant,
            version=int(version),
            latency_ms={b: float(p["model"]["median_ms"]) for b, p in profiles.items()},
            map=measured,
            map_checkpoint=T.get_float(tags, T.MAP_CHECKPOINT),
            unavailable=unavailable,
            map_unavailable=map_unavailable,
            tags=new_tags,
        )
        for backend, ap in measured.items():
            log.info(
                "%-12s %s: mAP 50:95 %.4f on '%s' (checkpoint %s)",
                variant,
                backend,
                ap,
                split,
                "unknown" if result.map_checkpoint is None else f"{result.map_checkpoint:.4f}",
            )
        for backend, why in unavailable.items():
            log.warning("%-12s %s unavailable: %s", variant, backend, why)
        for backend, why in map_unavailable.items():
            log.warning("%-12s %s: mAP not measured: %s", variant, backend, why)
        return result


def benchmark_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per version (``VersionBenchmark.as_dict()``) and backend: ``variant``,
    ``version``, ``backend``, ``median_ms`` (3 decimals), ``map`` (measured here, else ``None``) and
    ``map_checkpoint`` (4 decimals), and ``status`` (``measured``, or what was not and why). The
    version tags keep the full figures."""

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(float(value), digits)

    rows: list[dict[str, Any]] = []
    for r in results:
        head = {"variant": r["variant"], "version": r["version"]}
        for backend, ms in r["latency_ms"].items():
            why = r["map_unavailable"].get(backend)
            rows.append(
                {
                    **head,
                    "backend": backend,
                    "median_ms": rounded(ms, 3),
                    "map": rounded(r["map"].get(backend), 4),
                    "map_checkpoint": rounded(r["map_checkpoint"], 4) if backend in r["map"] else None,
                    "status": "measured" if why is None else f"latency measured; mAP not measured: {why}",
                }
            )
        for backend, why in r["unavailable"].items():
            rows.append(
                {
                    **head,
                    "backend": backend,
                    "median_ms": None,
                    "map": None,
                    "map_checkpoint": None,
                    "status": f"unavailable: {why}",
                }
            )
    return rows


def benchmark_notes(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: each backend (or backend's mAP) not measured and why, once per reason."""
    lines: list[str] = []
    for r in results:
        for backend, why in r["unavailable"].items():
            lines.append(f"- {backend}: unavailable ({why})")
        for backend, why in r["map_unavailable"].items():
            lines.append(f"- {backend}: mAP not measured ({why})")
    unique = list(dict.fromkeys(lines))
    return "# Benchmark\n\n" + ("\n".join(unique) if unique else "Every requested figure was measured.")
