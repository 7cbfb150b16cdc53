"""The main job on embedded defaults: synthesise, validate, version, train, deploy, register, promote.

``detops demo`` runs it as the Prefect ``retrain`` flow (``detops.cli.demo_flow``); ``detops demo
--no-flow`` runs ``run_demo`` here: the same library calls in the same order, without Prefect. Both
end with ``closing_text``: the deployed artifacts, the promotions, the comparison report and the time
each stage took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detops.presets import PRESETS, train_config
from detops.settings import Settings

log = logging.getLogger(__name__)

SMOKE = PRESETS["smoke"]
# (variant, epochs), trained in this order: the smoke preset's schedule, as the flow runs it. The README
# has the measured times and mAPs.
DEMO_RUNS: tuple[tuple[str, int], ...] = tuple(
    (variant, int(train_config(variant, preset="smoke")["epochs"]))
    for variant in ("damo_yolo_t", "rtdetrv2_s")
)
DEPLOY_BACKENDS: tuple[str, ...] = ("ort", "openvino")
TENSORRT_NOTE = (
    "TensorRT build, profile and engine evaluation skipped: no `t4` pool here (run without Prefect)."
)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo. The dataset fields must stay those ``data.dvc`` was made with (synth's
    defaults, seed 0), so that a fresh clone regenerates byte-identical data and the same version."""

    seed: int = 0
    train_images: int = 128
    val_images: int = 32
    synth_size: int = 320
    runs: tuple[tuple[str, int], ...] = DEMO_RUNS
    """(variant, epochs) pairs, trained in this order."""
    img_size: int | None = None
    """Training and evaluation input size of every variant; ``None``: the smoke preset's by family."""
    batch_size: int = int(train_config(DEMO_RUNS[0][0], preset="smoke")["batch_size"])
    workers: int = SMOKE.workers
    eval_interval: int = SMOKE.eval_interval
    """Validate every this many epochs (and after the last)."""
    profile_seconds: float = SMOKE.profile_seconds
    """Timed seconds per profile measurement of each deployed artifact (after a short warm-up)."""
    progress: bool = False
    """Progress bars during training (``--verbose``)."""


@dataclass
class StageClock:
    """Wall time of each stage, in the order they ran: ``with clock("train x"): ...``."""

    rows: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.rows.append((name, time.perf_counter() - start))


def stage_table(rows: Sequence[tuple[str, float]], *, total: float) -> str:
    """The time each stage took as printable text, with its share of ``total`` seconds, and the
    time no stage accounts for (imports, the flow engine) when it is 5 % of the total or more."""
    width = max([len(name) for name, _ in rows] + [len("total")])
    lines = [f"{'stage':<{width}}  {'seconds':>8}  {'share':>6}"]
    rest = total - sum(sec for _, sec in rows)
    shown = [*rows, ("other (start-up, orchestration)", rest)] if rest >= 0.05 * total else list(rows)
    width = max(width, *(len(name) for name, _ in shown))
    lines[0] = f"{'stage':<{width}}  {'seconds':>8}  {'share':>6}"
    lines += [f"{name:<{width}}  {sec:>8.1f}  {sec / total:>6.0%}" for name, sec in shown]
    lines.append(f"{'total':<{width}}  {total:>8.1f}")
    return "\n".join(lines)


def stage_rows(rows: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """``rows`` (a stage or task run name, seconds) summed into the demo's stages, in order of first
    appearance: ``data`` (synthesise, validate, version), each ``train <variant>``, ``deploy``
    (export, evaluate, profile), ``registry`` (register, promote, report, TensorRT dispatch) and
    whatever else ran (the Prefect API's start) under its own name."""
    out: dict[str, float] = {}
    for name, seconds in rows:
        words = name.replace("-", " ").split()
        if words[0] in ("synthesise", "validate", "version", "plan"):
            group = "data (synthesise, validate, version)"
        elif words[0] == "train" and len(words) > 1:
            group = f"train {words[1]}"
        elif words[0] in ("export", "evaluate", "profile"):
            group = "deploy (export, evaluate, profile)"
        elif words[0] in ("register", "promote", "report", "dispatch"):
            group = "registry (register, promote, report)"
        else:
            group = name
        out[group] = out.get(group, 0.0) + seconds
    return list(out.items())


def synthesize_demo_data(data_root: Path, *, config: DemoConfig) -> Any:
    """Write the demo's synthetic dataset (``config``'s sizes and seed) to ``data_root`` and log it in
    one sentence; returns the ``SynthSummary``."""
    from detops.data.synth import synthesize

    summary = synthesize(
        data_root,
        train=config.train_images,
        val=config.val_images,
        size=config.synth_size,
        seed=config.seed,
        progress=False,
    )
    log.info("[data] synthetic COCO dataset (seed %d): %s", config.seed, summary)
    return summary


def run_demo(*, settings: Settings, config: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Run the demo pipeline without Prefect; returns what the ``retrain`` flow returns (``dataset``,
    ``deployed``, ``registered``, ``decisions``, ``tensorrt``, ``report``) plus ``stages`` ([(name,
    seconds)]).

    Writes the dataset to ``<project root>/data``, Data Docs, runs and the MLflow store under
    ``settings.home``. Each training is tracked in MLflow exactly as ``detops train`` tracks it; the
    export, the artifact evaluations and the profiles are logged into that run, and the registered
    version points at it. Raises ``DetopsError`` when a step fails; later steps then do not run.
    """
    from detops.data.validate import validate_dataset
    from detops.data.versioning import version_dataset
    from detops.deploy.pipeline import evaluate_run, export_run, profile_run
    from detops.engine.fit import fit
    from detops.errors import DetopsError
    from detops.registry.pipeline import register_and_promote
    from detops.tracking.training import tracked_training

    data_root = Path(settings.project_root) / "data"
    home = Path(settings.home)
    clock = StageClock()

    with clock("synthesise data"):
        synthesize_demo_data(data_root, config=config)
    with clock("validate data"):
        report = validate_dataset(data_root, docs_dir=home / "data-docs")
    if not report.success:
        raise DetopsError(f"{data_root}: failed validation; Data Docs at {report.docs_path}", exit_code=1)
    with clock("version data"):
        version = version_dataset(data_root, settings=settings, push=True, validate=False)

    runs: list[dict[str, Any]] = []
    for variant, epochs in config.runs:
        img_size = train_config(variant, preset="smoke", img_size=config.img_size)["img_size"]
        log.info("[train] %s: %d epochs at %d px", variant, epochs, img_size)
        with clock(f"train {variant}"), tracked_training(settings=settings) as tracking:
            run = fit(
                variant,
                data_root=data_root,
                epochs=epochs,
                out_dir=home / "runs" / f"demo-{variant}",
                img_size=img_size,
                batch_size=config.batch_size,
                workers=config.workers,
                seed=config.seed,
                callbacks=tracking.callbacks,
                overrides={"eval_interval": config.eval_interval, "progress": config.progress},
            )
        runs.append({**run, "run_id": tracking.run_id})

    deployed: dict[str, Any] = {}
    for run in runs:
        variant = run["variant"]
        with clock(f"export {variant}"):
            artifact = export_run(run, settings=settings)
        with clock(f"evaluate {variant}"):
            evaluations = evaluate_run(
                artifact, backends=DEPLOY_BACKENDS, data_root=str(data_root), settings=settings
            )
        with clock(f"profile {variant}"):
            profiles = {
                b: profile_run(artifact, backend=b, seconds=config.profile_seconds, settings=settings)
                for b in DEPLOY_BACKENDS
            }
        deployed[variant] = {
            "onnx": artifact["onnx"],
            "evaluations": evaluations,
            "profiles": profiles,
            "max_rel_error": artifact["max_rel_error"],
            "run_id": artifact["run_id"],
        }
    with clock("register, promote, report"):
        registry = register_and_promote(runs, deployed=deployed, settings=settings, data_valid=report.success)
    return {
        "dataset": {"root": str(data_root), "md5": version.md5, "files": version.files},
        "runs": {run["variant"]: run for run in runs},
        "deployed": deployed,
        **registry,
        "tensorrt": {"dispatched": False, "detail": TENSORRT_NOTE},
        "stages": clock.rows,
    }


def deploy_table(deployed: dict[str, Any], *, backends: Sequence[str] = DEPLOY_BACKENDS) -> str:
    """variant, mAP of the checkpoint and of the ONNX artifact on each backend, and CPU ms on each
    backend, as printable text; CPU ms is the median model time at batch 1."""
    names = {"ort": "ORT", "openvino": "OpenVINO", "tensorrt": "TensorRT"}
    heads = ["mAP PyTorch", *(f"mAP {names.get(b, b)}" for b in backends)]
    heads += [f"ms {names.get(b, b)}" for b in backends]
    lines = [
        "Deployed artifacts (val split, mAP 50:95; ms = median CPU model time, batch 1):",
        f"{'variant':<14}" + "".join(f"{h:>13}" for h in heads),
    ]
    for variant, d in deployed.items():
        evals = d["evaluations"]
        reference = next(e["reference"]["AP"] for e in evals.values() if "reference" in e)
        cells = [f"{reference:.4f}"]
        cells += [f"{evals[b]['AP']:.4f}" if b in evals else "-" for b in backends]
        cells += [
            f"{d['profiles'][b]['model']['median_ms']:.2f}" if b in d["profiles"] else "-" for b in backends
        ]
        lines.append(f"{variant:<14}" + "".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def closing_text(result: dict[str, Any], *, total_s: float, log_file: Path | None) -> str:
    """What the demo prints at the end, flow or not: the deployed artifacts, the TensorRT note, the
    comparison report (champions marked), the time per stage (grouped by ``stage_rows``), the log
    file and the UI command. The promotions were logged as they happened."""
    parts = [deploy_table(result["deployed"]), ""]
    parts += [f"[tensorrt] {result['tensorrt']['detail']}", ""]
    parts += [
        "Comparison report (registry champions beside the published figures):",
        result["report"]["markdown"],
    ]
    parts += ["Time per stage:", stage_table(stage_rows(result["stages"]), total=total_s), ""]
    if log_file is not None:
        parts.append(f"Full log: {log_file}")
    parts.append(
        "Open the MLflow UI (training runs with curves, registered versions, aliases) with:  detops ui"
    )
    return "\n".join(parts)
