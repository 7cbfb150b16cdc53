"""Latency-only entries: the columns of the comparison table that need no training.

``benchmark_untrained(variants)`` builds each variant untrained (80 classes, seeded initialisation),
exports it to ONNX at the asked input size (batch 1, with the export's ONNX Runtime parity check),
counts its params and GFLOPs (640x640, the form its family publishes) and profiles the ONNX file on
every asked backend this machine has, with one harness in one run. It trains nothing and registers
nothing: each variant's figures go to one MLflow run in experiment ``detops-benchmark``, tagged
``detops.latency_only=true`` and ``detops.source=untrained``, which the report shows (labelled
"untrained, latency only") in the rows that have no registered version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.registry import tags as T

LATENCY_EXPERIMENT = "detops-benchmark"
LATENCY_ONLY = "detops.latency_only"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyEntry:
    """One variant's latency-only figures: median model ms per backend, and why a backend is missing."""

    variant: str
    img_size: int
    params: int
    gflops: float
    latency_ms: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None


def resolve_variants(names: Sequence[str]) -> list[str]:
    """``["all"]`` -> every variant of the comparison table (those with published figures), in table
    order; otherwise the names, each checked (``DetopsError`` naming a bad one and the valid ones)."""
    import models

    table = [v for v in models.VARIANTS if models.get_variant(v).published is not None]
    table = [v for v in table if models.get_variant(v).published.t4_ms_table is not None]  # type: ignore[union-attr]
    if list(names) == ["all"]:
        return table
    for name in names:
        if name not in models.VARIANT_TABLE:
            raise DetopsError(f"--variants: unknown variant {name!r}; valid: all, {', '.join(table)}")
    return list(names)


def check_backends(names: Sequence[str]) -> list[str]:
    """``names`` when each is a backend a latency can be measured on; ``DetopsError`` naming the first
    that is not."""
    from detops.registry.policy import BACKENDS

    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise DetopsError(f"--backends: unknown backend {unknown[0]!r}; valid: {', '.join(BACKENDS)}")
    return list(names)


def benchmark_untrained(
    variants: Sequence[str],
    *,
    img_size: int = 640,
    backends: Sequence[str] = ("ort", "openvino", "tensorrt"),
    seconds: float = 1.5,
    settings: Any = None,
    client: Any = None,
    on_entry: Callable[[LatencyEntry], None] | None = None,
) -> list[LatencyEntry]:
    """Latency-only figures of ``variants`` (see the module docstring) on ``backends`` at
    ``img_size``; each recorded in MLflow as it is done (``on_entry`` is called then)."""
    import models
    from detops.deploy.exporting import export_artifact
    from detops.deploy.pipeline import backend_artifacts, profile_run
    from detops.registry.client import open_registry
    from detops.registry.register import model_size
    from detops.settings import get_settings

    settings = settings or get_settings()
    with open_registry(settings, client=client) as client:
        check_backends(backends)
        for name in variants:
            try:
                models.check_input_size(models.get_variant(name), img_size)
            except ValueError as exc:
                raise DetopsError(f"--img-size {img_size}: {name}: {exc}") from None
        entries = []
        for variant in variants:
            work = Path(settings.home) / "benchmark" / f"{variant}-{img_size}"
            log.info("%-12s exporting the untrained model at %d px", variant, img_size)
            export, _ = export_artifact(variant, out=work / "model.onnx", image_size=img_size, batch=1)
            sizes = model_size(models.build_model(variant, num_classes=80).eval(), variant)
            artifacts, unavailable = backend_artifacts(export.path, backends)
            profiles = {
                backend: profile_run({"onnx": path, "variant": variant}, backend=backend, seconds=seconds)
                for backend, path in artifacts.items()
            }
            entry = LatencyEntry(
                variant=variant,
                img_size=img_size,
                params=int(sizes["params"]),
                gflops=sizes["gflops"],
                latency_ms={b: float(p["model"]["median_ms"]) for b, p in profiles.items()},
                unavailable=unavailable,
            )
            entry = _record(entry, profiles, client=client, work=work)
            entries.append(entry)
            if on_entry is not None:
                on_entry(entry)
        return entries


def _record(
    entry: LatencyEntry, profiles: dict[str, dict[str, Any]], *, client: Any, work: Path
) -> LatencyEntry:
    """One finished MLflow run holding ``entry`` as tags and the profiles as JSON artifacts."""
    from dataclasses import replace

    from detops.fileio import write_json
    from detops.registry.register import latency_tags

    tags = {
        T.VARIANT: entry.variant,
        LATENCY_ONLY: "true",
        T.SOURCE: "untrained",
        T.IMG_SIZE: str(entry.img_size),
        "detops.num_classes": "80",
        T.PARAMS: str(entry.params),
        T.GFLOPS: T.fmt_float(entry.gflops),
        **latency_tags(profiles),
    }
    for backend, why in entry.unavailable.items():
        tags[f"detops.unavailable.{backend}"] = why[:4900]
    run_id = client.create_run(
        experiment=LATENCY_EXPERIMENT,
        run_name=f"latency only {entry.variant} {entry.img_size}px",
        tags=tags,
    )
    for backend, prof in profiles.items():
        write_json(work / "profiles" / f"{backend}.json", prof)
    if profiles:
        client.log_run_artifacts(run_id, work / "profiles", artifact_path="profiles")
    client.set_run_terminated(run_id)
    return replace(entry, run_id=run_id)


def latest_entry_tags(variant: str, *, client: Any) -> dict[str, str] | None:
    """Tags of ``variant``'s newest latency-only entry (None when it has none)."""
    return client.newest_run_tags(LATENCY_EXPERIMENT, {T.VARIANT: variant, LATENCY_ONLY: "true"})
