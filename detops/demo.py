"""The main job on embedded defaults: synthesise, validate, version, train briefly, evaluate, deploy.

``detops demo`` (and so ``make demo``) runs this. Every step is a library call the later Prefect flows
will wrap as tasks; nothing here needs a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detops.settings import Settings

# (variant, epochs): short enough that `make demo` (set-up, the retrain flow, deploy, registry) stays
# under 10 minutes on an idle 2-core CPU; the README has the measured times and mAPs.
DEMO_RUNS: tuple[tuple[str, int], ...] = (("damo_yolo_t", 8), ("rtdetrv2_s", 3))


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
    img_size: int = 256
    batch_size: int = 8
    workers: int = 0
    profile_seconds: float = 1.5
    """Timed seconds per profile measurement of each deployed artifact (after a short warm-up)."""


def run_demo(
    *, settings: Settings, config: DemoConfig = DemoConfig(), echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the demo pipeline; returns ``{"version", "runs": {variant: fit summary}, "stats": {variant:
    COCO stats of the best checkpoint on the val split}, "deploy": {variant: {"onnx", "evaluation",
    "profiles": {backend: profile dict}}}, "registry": see ``register_and_promote``}``.

    After training, each best checkpoint is exported to ONNX beside it, the ONNX artifact is evaluated
    on the val split against the checkpoint (``--reference``), profiled on ONNX Runtime and OpenVINO,
    and one table compares them. Finally both runs are registered in MLflow (the settings' store),
    promoted under the default policy, and the comparison report is printed with the command that
    opens the MLflow UI.

    Writes the dataset to ``<project root>/data``, Data Docs and runs under ``settings.home``.
    Raises ``DetopsError`` (via the steps) when any step fails; later steps then do not run.
    """
    from detops.data.synth import synthesize
    from detops.data.validate import failure_table, validate_dataset
    from detops.data.versioning import version_dataset
    from detops.engine.fit import fit
    from detops.engine.inference import evaluate_checkpoint
    from detops.errors import DetopsError
    from detops.evaluation import format_stats

    data_root = Path(settings.project_root) / "data"
    home = Path(settings.home)

    echo(f"[1/4] synthesising a COCO-format dataset into {data_root} (seed {config.seed})")
    summary = synthesize(
        data_root, train=config.train_images, val=config.val_images, size=config.synth_size, seed=config.seed
    )
    echo(f"      {summary}")

    echo("[2/4] validating it with Great Expectations")
    report = validate_dataset(data_root, docs_dir=home / "data-docs")
    if not report.success:
        from rich.console import Console

        Console().print(failure_table(report))
        raise DetopsError(f"{data_root}: failed validation; Data Docs at {report.docs_path}", exit_code=1)
    echo(f"      valid; Data Docs at {report.docs_path}")

    echo(f"[3/4] versioning it with DVC and pushing to the {settings.dvc_remote} remote")
    version = version_dataset(data_root, settings=settings, push=True)
    echo(
        f"      dataset version {version.md5} ({version.files} files, {version.pushed} pushed to {version.remote})"
    )

    runs: dict[str, Any] = {}
    for i, (variant, epochs) in enumerate(config.runs, start=1):
        echo(f"[4/4] training {variant} ({i}/{len(config.runs)}): {epochs} epochs at {config.img_size} px")
        runs[variant] = fit(
            variant,
            data_root=data_root,
            epochs=epochs,
            out_dir=home / "runs" / f"demo-{variant}",
            img_size=config.img_size,
            batch_size=config.batch_size,
            workers=config.workers,
            seed=config.seed,
        )
    stats: dict[str, Any] = {}
    for variant, run in runs.items():
        best = run["checkpoints"]["best"]
        stats[variant] = evaluate_checkpoint(best, data_root=data_root, split="val", workers=config.workers)
        echo("")
        echo(f"COCO bbox mAP of {variant} on the val split ({best}, epoch {run['best_epoch']}):")
        echo(format_stats(stats[variant]))
    deployed = deploy_runs(runs, data_root=data_root, config=config, echo=echo)
    from detops.registry.pipeline import register_and_promote

    echo("")
    echo("[registry] registering both models in MLflow and promoting them under the default policy")
    registry = register_and_promote(
        runs, settings=settings, deployed=deployed, data_valid=report.success, echo=echo
    )
    return {
        "version": {"md5": version.md5, "files": version.files},
        "runs": runs,
        "stats": stats,
        "deploy": deployed,
        "registry": registry,
    }


DEPLOY_BACKENDS: tuple[str, ...] = ("ort", "openvino")


def deploy_runs(
    runs: dict[str, Any], *, data_root: Path, config: DemoConfig, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Export each run's best checkpoint (batch 1), evaluate the ONNX file against it on val, profile it
    on ONNX Runtime and OpenVINO (batch 1, model only), and print one comparison table."""
    from detops.deploy.evaluate import evaluate_artifact
    from detops.deploy.exporting import export_artifact
    from detops.deploy.profile import profile_runner
    from detops.deploy.runners.base import load_runner

    out: dict[str, Any] = {}
    for variant, run in runs.items():
        best = Path(run["checkpoints"]["best"])
        echo(f"[deploy] exporting {variant} to ONNX, evaluating it against {best.name}, profiling it")
        # A fixed batch of 1: the CPU latency case, and ONNX Runtime fuses more of a static graph
        # (see the README's deploy section); evaluation feeds it one image at a time.
        report, _ = export_artifact(best, batch=1)
        evaluation = evaluate_artifact(
            report.path, backend="ort", data_root=data_root, split="val", reference=best
        )
        profiles = {}
        for backend in DEPLOY_BACKENDS:
            runner = load_runner(report.path, backend=backend)
            profiles[backend] = profile_runner(
                runner, artifact=str(report.path), batch=1, warmup=3, seconds=config.profile_seconds
            )
        out[variant] = {
            "onnx": str(report.path),
            "evaluation": evaluation,
            "profiles": profiles,
            "max_rel_error": report.max_rel_error,
        }
    echo("")
    echo(deploy_table(out))
    return out


def deploy_table(deployed: dict[str, Any]) -> str:
    """variant, mAP (PyTorch), mAP (ONNX), delta, CPU ms (ORT), CPU ms (OpenVINO) as printable text;
    CPU ms is the median model time at batch 1 with the runtime's default threads."""
    header = f"{'variant':<16}{'mAP (PyTorch)':>14}{'mAP (ONNX)':>12}{'delta':>9}{'CPU ms (ORT)':>14}{'CPU ms (OpenVINO)':>19}"
    lines = ["Deployed artifacts (val split; CPU ms = median model time, batch 1):", header]
    for variant, d in deployed.items():
        ev = d["evaluation"]
        ms = [d["profiles"][b]["model"]["median_ms"] for b in DEPLOY_BACKENDS]
        lines.append(
            f"{variant:<16}{ev['reference']['AP']:>14.4f}{ev['AP']:>12.4f}{ev['delta']['AP']:>+9.4f}"
            f"{ms[0]:>14.2f}{ms[1]:>19.2f}"
        )
    return "\n".join(lines)
