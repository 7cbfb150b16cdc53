"""Top-level ``detops train`` and ``detops evaluate`` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from detops.errors import DetopsError


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise DetopsError(f"--tag {text!r}: expected KEY=VALUE")
    return key, value


def train(
    variant: str = typer.Argument(None, help="Variant to train, e.g. damo_yolo_t (omit with --resume)."),
    data: Path = typer.Option(None, "--data", help="Dataset root (our layout or COCO 2017)."),
    epochs: int = typer.Option(None, "--epochs", help="Total epochs (default 10; with --resume: extend to)."),
    img_size: int = typer.Option(None, "--img-size", help="Square input size (default: the variant's)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Total batch over all processes."),
    weights: Path = typer.Option(
        None, "--weights", help="Weight file (detops weights import) or checkpoint."
    ),
    resume: Path = typer.Option(None, "--resume", help="Run directory to continue from its last.pt."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto (CUDA when available, with AMP)."),
    out: Path = typer.Option(None, "--out", help="Run directory (default <project>/.detops/runs/<variant>)."),
    workers: int = typer.Option(2, "--workers", help="Data-loader workers per process."),
    seed: int = typer.Option(0, "--seed", help="Seed for init, shuffling and augmentation."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Resize + flip only."),
    eval_interval: int = typer.Option(
        1, "--eval-interval", help="Validate every N epochs (and after the last)."
    ),
    tag: list[str] = typer.Option(
        None, "--tag", help="KEY=VALUE tag of the MLflow run (repeatable), e.g. the Prefect flow run's id."
    ),
    track: bool = typer.Option(
        None, "--track/--no-track", help="Log the run to MLflow (default: on; DETOPS_TRACK=false)."
    ),
    upload_last: bool = typer.Option(
        False,
        "--upload-last",
        help="Upload last.pt and the history to the MLflow run after every epoch, so a retry on "
        "another machine resumes from the artifact store.",
    ),
    register: bool = typer.Option(
        False, "--register", help="Then register the run as a new model version (detops register)."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Debug lines and other libraries' messages on the console too."
    ),
) -> None:
    """Train a variant; one summary line per epoch, checkpoints and metrics in the run directory."""
    from detops.cli import _validate as check

    # Arguments first: a bad one is refused before the engine (and torch) is even imported.
    device = check.device(device)
    check.at_least(batch_size, "--batch-size", 1)
    check.at_least(workers, "--workers", 0)
    check.at_least(eval_interval, "--eval-interval", 1)
    tags = dict(_tag(t) for t in tag or [])
    if epochs is not None:
        check.at_least(epochs, "--epochs", 1)
    if variant is not None and resume is None:
        row = check.variant(variant)
        if img_size is not None:
            check.input_size(row, img_size, training=not no_augment)

    from detops.engine.fit import fit
    from detops.engine.fit import resume as resume_run
    from detops.logs import log_path, setup_logging
    from detops.settings import get_settings
    from detops.tracking.training import tracked_training

    settings = get_settings()
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 writes the log file
    log_file = setup_logging(verbose=verbose, log_file=log_path(settings.home, "train") if rank0 else None)
    with tracked_training(
        track=track, resume=resume is not None, tags=tags, settings=settings, upload_last=upload_last
    ) as tracking:
        if resume is not None:
            summary = resume_run(resume, epochs=epochs, device=device, callbacks=tracking.callbacks)
        else:
            if variant is None or data is None:
                raise DetopsError("train needs VARIANT and --data ROOT (or --resume RUN_DIR)")
            summary = fit(
                variant,
                data_root=data,
                epochs=epochs if epochs is not None else 10,
                out_dir=out if out is not None else settings.home / "runs" / variant,
                img_size=img_size,
                batch_size=batch_size,
                device=device,
                workers=workers,
                seed=seed,
                weights=weights,
                overrides={"augment": not no_augment, "eval_interval": eval_interval},
                callbacks=tracking.callbacks,
            )
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 reports
    typer.echo(
        f"done: best mAP {summary['best_map']:.4f} at epoch {summary['best_epoch']}; "
        f"checkpoints in {summary['run_dir']} ({summary['wall_time_s']:.0f} s); log {log_file}"
    )
    if tracking.run_id:
        typer.echo(f"tracked: MLflow run {tracking.run_id} (browse with `detops ui`)")
    if register:
        from detops.cli.registry import register_cmd

        register_cmd(run=str(summary["run_dir"]), profile_seconds=1.5)


def evaluate(
    checkpoint: Path = typer.Argument(
        None, help="Artifact to evaluate on --data: checkpoint, run directory, ONNX file or engine."
    ),
    annotations: Path = typer.Option(None, "--annotations", help="COCO ground-truth JSON."),
    predictions: Path = typer.Option(None, "--predictions", help="COCO results JSON."),
    data: Path = typer.Option(None, "--data", help="Dataset root (with CHECKPOINT)."),
    split: str = typer.Option("val", "--split", help="Split to evaluate (with CHECKPOINT)."),
    device: str = typer.Option(
        "auto", "--device", help="cpu, cuda or auto (CUDA when available; with CHECKPOINT)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Batch size (with CHECKPOINT)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    backend: str = typer.Option(
        None,
        "--backend",
        help="With an artifact: torch, ort, openvino or tensorrt (default by file kind). "
        "With --predictions: pycocotools (default) or faster (faster-coco-eval).",
    ),
    reference: Path = typer.Option(
        None, "--reference", help="With an artifact: checkpoint to compare each COCO statistic against."
    ),
    max_drop: float = typer.Option(
        None, "--max-drop", help="With --reference: exit 1 when mAP 50:95 is more than this below it."
    ),
    run_id: str = typer.Option(
        None, "--run-id", help="With an artifact: MLflow run (id or run directory) to log the results into."
    ),
) -> None:
    """COCO bbox mAP (pycocotools): a results file against annotations, or a checkpoint on a dataset."""
    if max_drop is not None and (reference is None or not 0 <= max_drop < 1):
        raise DetopsError(f"--max-drop needs --reference CHECKPOINT and a value in [0, 1), got {max_drop}")
    from detops.cli import _validate as check
    from detops.evaluation import STAT_NAMES, evaluate_files, format_stats

    check.at_least(batch_size, "--batch-size", 1)
    if checkpoint is None:
        backend = check.one_of(backend or "pycocotools", "--backend", ("pycocotools", "faster"))
    if checkpoint is not None:
        device = check.device(device)
        if annotations is not None or predictions is not None:
            raise DetopsError("give either CHECKPOINT --data ROOT or --annotations/--predictions, not both")
        if data is None:
            raise DetopsError("evaluating a checkpoint needs --data ROOT")
        from detops.cli.deploy import evaluate_artifact_command
        from detops.deploy.artifact import artifact_kind, resolve_artifact

        path = resolve_artifact(checkpoint)
        if artifact_kind(path) == "checkpoint" and backend in (None, "torch") and reference is None:
            from detops.engine.inference import evaluate_checkpoint

            stats = evaluate_checkpoint(
                path, data_root=data, split=split, device=device, batch_size=batch_size
            )
            stats = {**stats, "backend": "torch", "artifact": str(checkpoint)}
        else:
            stats = evaluate_artifact_command(
                checkpoint,
                data=data,
                split=split,
                backend=backend,
                reference=reference,
                device=device,
                batch_size=batch_size,
            )
    else:
        if reference is not None:
            raise DetopsError("--reference goes with an ARTIFACT --data ROOT, not with --predictions")
        if annotations is None or predictions is None:
            raise DetopsError(
                "evaluate needs --annotations GT.json --predictions DT.json, or CHECKPOINT --data ROOT"
            )
        stats = evaluate_files(annotations=annotations, predictions=predictions, backend=backend)
    extra = {k: stats[k] for k in ("backend", "artifact", "delta", "dropped_nonfinite") if k in stats}
    if as_json:
        typer.echo(
            json.dumps({**{k: stats[k] for k in STAT_NAMES}, "per_class": stats["per_class"], **extra})
        )
    else:
        typer.echo(format_stats(stats))
        if "delta" in stats:
            from detops.cli.deploy import format_delta

            typer.echo(f"\n{stats['artifact']} ({stats['backend']}) against --reference {reference}:")
            typer.echo(format_delta(stats))
    if checkpoint is not None:
        from detops.cli.tracking import log_evaluation

        log_evaluation(checkpoint, run_id=run_id, stats=stats)
    if max_drop is not None:
        from detops.deploy.accuracy_gate import accuracy_gate

        verdict = accuracy_gate(stats, max_drop=max_drop)
        typer.echo(f"accuracy gate {'passed' if verdict.passed else 'FAILED'}: {verdict.detail}", err=as_json)
        if not verdict.passed:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``evaluate`` to the root app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
