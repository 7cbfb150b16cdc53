"""`detops export`, `detops profile` and `detops predict`: deployable artifacts, timed and run.

``evaluate_artifact_command`` is the artifact branch of `detops evaluate` (see ``detops.cli.engine``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from detops.errors import DetopsError

BACKENDS = ("torch", "ort", "openvino", "tensorrt")


def export_cmd(
    source: str = typer.Argument(
        ..., help="Checkpoint (best.pt/last.pt), run directory, detops weight file, or a variant name."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="ONNX file (default: beside the checkpoint)."),
    weights: Path = typer.Option(None, "--weights", help="With a variant name: a weight file or checkpoint."),
    img_size: int = typer.Option(None, "--img-size", help="Square input size (default: the trained one)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or later)."),
    batch: int = typer.Option(None, "--batch", help="Fixed batch size of the graph."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Dynamic batch axis (the default)."),
    end2end: bool = typer.Option(
        False,
        "--end2end",
        help="Post-processing inside the graph (DAMO-YOLO: NonMaxSuppression; RT-DETRv2: top-K): "
        "outputs num_dets, boxes (input pixels), scores, labels, padded to K (default file *_e2e.onnx).",
    ),
    run_id: str = typer.Option(
        None, "--run-id", help="MLflow run (id or run directory) to log the result into."
    ),
) -> None:
    """Fuse, export to ONNX with class names and preprocessing in its metadata, and check ONNX Runtime
    against PyTorch before the file appears."""
    from detops.deploy.exporting import export_artifact

    if opset < 17:
        raise DetopsError(f"--opset must be >= 17, got {opset}")
    if batch is not None and dynamic_batch:
        raise DetopsError("give either --batch N or --dynamic-batch, not both")
    if batch is not None and batch < 1:
        raise DetopsError(f"--batch must be >= 1, got {batch}")
    if weights is not None:
        import models

        if source not in models.VARIANT_TABLE:
            raise DetopsError(f"--weights goes with a variant name, got SOURCE {source!r}")
        from detops.deploy.artifact import resolve_source

        if resolve_source(weights).variant != source:
            raise DetopsError(
                f"--weights {weights}: made for {resolve_source(weights).variant!r}, not {source!r}"
            )
        source = str(weights)
    from rich.console import Console

    with Console(stderr=True).status(f"exporting {source} and checking it with ONNX Runtime"):
        report, meta = export_artifact(
            source, out=out, image_size=img_size, opset=opset, batch=batch, end2end=end2end
        )
    errors = ", ".join(f"{k} {v:.1e}" for k, v in report.max_rel_error.items())
    shape = f"batch {meta.batch}" if meta.batch is not None else "dynamic batch"
    typer.echo(
        f"wrote {report.path} ({meta.variant}, {meta.input_size} px, {shape}, {meta.num_classes} classes, "
        f"opset {report.opset}); ONNX Runtime vs PyTorch relative error: {errors}"
    )
    if meta.end2end:
        d = report.detections
        thresholds = (
            f"score > {meta.score_threshold:g}, NMS IoU > {meta.iou_threshold:g}, "
            if meta.iou_threshold is not None
            else ""
        )
        typer.echo(
            f"end-to-end: {thresholds}K {meta.max_detections}; vs the library's post-processing of the "
            f"same raw outputs: max box {d['max_box_px']:.1e} px, max score {d['max_score']:.1e}, "
            f"{int(d['count_mismatches'])} count mismatches, {int(d['unmatched'])} unmatched"
        )
    from detops.cli.tracking import log_export

    log_export(source, run_id=run_id, path=report.path, opset=report.opset, errors=dict(report.max_rel_error))


def profile_cmd(
    artifact: Path = typer.Argument(..., help="Checkpoint, run directory, ONNX file or TensorRT engine."),
    backend: str = typer.Option(..., "--backend", help="torch, ort, openvino or tensorrt."),
    device: str = typer.Option(
        None, "--device", help="cpu or cuda (default: cuda for tensorrt, cpu otherwise)."
    ),
    batch: int = typer.Option(1, "--batch", help="Images per run."),
    img_size: int = typer.Option(
        None, "--img-size", help="Input size (checkpoints only; graphs have theirs)."
    ),
    threads: int = typer.Option(None, "--threads", help="Intra-op CPU threads (default: the runtime's)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs first."),
    iters: int = typer.Option(None, "--iters", help="Timed runs (default 50)."),
    seconds: float = typer.Option(None, "--seconds", help="Time runs for at least this long instead."),
    precision: str = typer.Option(None, "--precision", help="fp16/bf16 (torch autocast, OpenVINO hint)."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON instead of a table."),
    baseline: Path = typer.Option(
        None,
        "--baseline",
        help="With an end-to-end graph: its plain graph, profiled the same way and shown beside it "
        "(end-to-end model time vs plain model time + Python NMS).",
    ),
    run_id: str = typer.Option(
        None, "--run-id", help="MLflow run (id or run directory) to log the result into."
    ),
) -> None:
    """Time an artifact: model (inference on a prepared batch), postprocess (the runner's
    post-processing of one inference's outputs) and end_to_end (uint8 images to detections); median,
    p90, p99, mean, std, min, throughput, and the environment."""
    from detops.deploy.profile import profile_runner
    from detops.deploy.runners.base import load_runner
    from detops.fileio import write_json

    if iters is not None and seconds is not None:
        raise DetopsError("give either --iters N or --seconds S, not both")
    if iters is not None and iters < 1:
        raise DetopsError(f"--iters must be >= 1, got {iters}")
    if seconds is not None and seconds <= 0:
        raise DetopsError(f"--seconds must be > 0, got {seconds}")
    if warmup < 0:
        raise DetopsError(f"--warmup must be >= 0, got {warmup}")
    if batch < 1:
        raise DetopsError(f"--batch must be >= 1, got {batch}")
    runner = load_runner(
        artifact, backend=backend, device=device, precision=precision, threads=threads, input_size=img_size
    )
    result = profile_runner(
        runner, artifact=str(artifact), batch=batch, warmup=warmup, iters=iters, seconds=seconds
    )
    if baseline is not None:
        from detops.deploy.profile import compare_end2end

        plain_runner = load_runner(
            baseline,
            backend=backend,
            device=device,
            precision=precision,
            threads=threads,
            input_size=img_size,
        )
        plain = profile_runner(
            plain_runner, artifact=str(baseline), batch=batch, warmup=warmup, iters=iters, seconds=seconds
        )
        result = {**result, "baseline": plain, "comparison": compare_end2end(result, plain)}
    if out is not None:
        write_json(out, result)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(format_profile(result))
    from detops.cli.tracking import log_profile

    log_profile(artifact, run_id=run_id, result=result)


def format_profile(result: dict[str, Any]) -> str:
    """A short text table of a profile result."""
    env = result["environment"]
    lines = [
        f"{result['variant']} on {result['backend']} ({result['device']}, {result['precision']}), "
        f"{result['input_size']} px, batch {result['batch']}, threads {env['threads'] or 'default'}",
        f"{env['cpu_model']}; {env['cpu_cores_logical']} logical cores"
        + (f"; {env['gpu_name']}" if env["gpu_name"] else ""),
        f"{'':<11}{'median':>9}{'p90':>9}{'p99':>9}{'mean':>9}{'std':>8}{'min':>9}{'img/s':>9}{'runs':>6}",
    ]
    for key in ("model", "postprocess", "end_to_end"):
        if key not in result:  # results written before the postprocess figure existed
            continue
        s = result[key]
        lines.append(
            f"{key:<11}{s['median_ms']:>7.2f}ms{s['p90_ms']:>7.2f}ms{s['p99_ms']:>7.2f}ms{s['mean_ms']:>7.2f}ms"
            f"{s['std_ms']:>6.2f}ms{s['min_ms']:>7.2f}ms{s['throughput_ips']:>9.1f}{s['n']:>6}"
        )
    if "comparison" in result:
        c = result["comparison"]
        lines.append(
            f"end-to-end graph (NMS inside) model {c['end2end_model_ms']:.2f} ms (+ {c['end2end_postprocess_ms']:.2f} "
            f"ms decoding) | plain graph model {c['plain_model_ms']:.2f} ms + Python post-processing "
            f"{c['plain_postprocess_ms']:.2f} ms = {c['plain_model_plus_post_ms']:.2f} ms "
            f"(baseline {result['baseline']['artifact']})"
        )
        lines.append(
            f"end_to_end medians: end-to-end graph {c['end2end_end_to_end_ms']:.2f} ms, plain graph "
            f"{c['plain_end_to_end_ms']:.2f} ms"
        )
    return "\n".join(lines)


def predict_cmd(
    artifact: Path = typer.Argument(..., help="Checkpoint, run directory, ONNX file or TensorRT engine."),
    inputs: list[Path] = typer.Argument(..., help="Image files and/or directories of images."),
    backend: str = typer.Option(
        None, "--backend", help="torch, ort, openvino or tensorrt (default: by kind)."
    ),
    device: str = typer.Option(
        None, "--device", help="cpu or cuda (default: cuda for tensorrt, cpu otherwise)."
    ),
    score: float = typer.Option(0.3, "--score", help="Draw and keep detections scoring at least this."),
    out: Path = typer.Option(Path("predictions"), "--out", help="Output directory."),
) -> None:
    """Detect on image files: each image with boxes, class names and scores drawn, plus one COCO-style
    JSON. A file that is not an image is reported on one line and skipped."""
    from detops.deploy.predict import predict_files
    from detops.deploy.runners.base import load_runner

    if not 0.0 <= score <= 1.0:
        raise DetopsError(f"--score must be within 0..1, got {score}")
    runner = load_runner(artifact, backend=backend or default_backend(artifact), device=device)
    report = predict_files(
        runner, inputs, out_dir=out, score=score, on_skip=lambda line: typer.echo(line, err=True)
    )
    typer.echo(f"wrote {len(report.images)} image(s) and {report.json_path} ({report.detections} detections)")
    if report.skipped:
        raise typer.Exit(2)


def default_backend(artifact: str | Path) -> str:
    """The backend an artifact kind runs on by default: checkpoint torch, ONNX ort, engine tensorrt."""
    from detops.deploy.artifact import artifact_kind, resolve_artifact

    kind = artifact_kind(resolve_artifact(artifact))
    return {"checkpoint": "torch", "onnx": "ort", "tensorrt": "tensorrt"}[kind]


def evaluate_artifact_command(
    artifact: Path,
    *,
    data: Path,
    split: str,
    backend: str | None,
    reference: Path | None,
    device: str,
    batch_size: int,
) -> dict[str, Any]:
    """The stats dict of `detops evaluate ARTIFACT --data ROOT [--backend B] [--reference CKPT]`:
    COCO statistics plus ``backend``, ``artifact`` and, with a reference, ``delta``."""
    from detops.deploy.evaluate import evaluate_artifact

    chosen = backend or default_backend(artifact)
    if chosen not in BACKENDS:
        raise DetopsError(f"--backend with an artifact must be one of {', '.join(BACKENDS)}; got {chosen!r}")
    return evaluate_artifact(
        artifact,
        backend=chosen,
        data_root=data,
        split=split,
        reference=reference,
        device=device,
        batch_size=batch_size,
    )


def format_delta(stats: dict[str, Any]) -> str:
    """Artifact, reference and difference per COCO statistic, as printable text."""
    from detops.evaluation import STAT_NAMES

    ref = stats["reference"]
    lines = [f" {'stat':<6}{'artifact':>10}{'reference':>11}{'delta':>9}"]
    for k in STAT_NAMES:
        lines.append(f" {k:<6}{stats[k]:>10.4f}{ref[k]:>11.4f}{stats['delta'][k]:>+9.4f}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add `export`, `profile` and `predict` to the root app."""
    app.command("export")(export_cmd)
    app.command("profile")(profile_cmd)
    app.command("predict")(predict_cmd)
