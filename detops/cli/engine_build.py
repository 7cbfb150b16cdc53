"""`detops engine build`: a TensorRT 10 engine (fp32/fp16/int8) from an exported ONNX file."""

from __future__ import annotations

from pathlib import Path

import typer

from detops.errors import DetopsError

app = typer.Typer(help="TensorRT 10 engines (needs an NVIDIA GPU and the optional extra trt of detops).")


@app.command("build")
def build_cmd(
    onnx_file: Path = typer.Argument(..., help="ONNX file written by detops export."),
    precision: str = typer.Option("fp16", "--precision", help="fp32, fp16 or int8."),
    calib_data: Path = typer.Option(None, "--calib-data", help="Dataset root for INT8 calibration."),
    calib_images: int = typer.Option(256, "--calib-images", help="Number of INT8 calibration images."),
    calib_split: str = typer.Option("val", "--calib-split", help="Split the calibration images come from."),
    calib_batch: int = typer.Option(8, "--calib-batch", help="Images per calibration batch."),
    calib_cache: Path = typer.Option(
        None, "--calib-cache", help="Calibration cache (default <engine>.calib)."
    ),
    timing_cache: Path = typer.Option(None, "--timing-cache", help="Tactic timing cache, loaded and saved."),
    workspace_gb: float = typer.Option(4.0, "--workspace-gb", help="Builder workspace limit (GiB)."),
    min_batch: int = typer.Option(1, "--min-batch", help="Smallest batch of the optimisation profile."),
    opt_batch: int = typer.Option(1, "--opt-batch", help="Batch TensorRT tunes for."),
    max_batch: int = typer.Option(32, "--max-batch", help="Largest batch of the optimisation profile."),
    out: Path = typer.Option(None, "--out", "-o", help="Engine file (default <stem>.<precision>.engine)."),
) -> None:
    """Parse, set the batch profile, calibrate (int8), build and write the engine with its JSON stamp."""
    from detops.deploy.tensorrt.build import build_engine, import_tensorrt
    from detops.deploy.tensorrt.calibrator import batched
    from detops.deploy.tensorrt.stamp import PRECISIONS

    # the command line first (it is wrong on any machine), then TensorRT, before any data is read
    if not onnx_file.is_file():
        raise DetopsError(f"{onnx_file}: no such ONNX file")
    if precision not in PRECISIONS:
        raise DetopsError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    import_tensorrt()
    batches = None
    if precision == "int8" and calib_data is not None:
        from detops.deploy.artifact import onnx_input_names, read_onnx_metadata
        from detops.deploy.calibration import calibration_samples

        meta = read_onnx_metadata(onnx_file)
        samples = calibration_samples(
            calib_data, meta=meta, input_names=onnx_input_names(onnx_file), n=calib_images, split=calib_split
        )
        batches = batched(samples, calib_batch)
    elif calib_data is not None:
        raise DetopsError(f"--calib-data goes with --precision int8, not {precision}")
    report = build_engine(
        onnx_file,
        out=out,
        precision=precision,
        calib_batches=batches,
        calib_batch_size=calib_batch,
        calib_cache=calib_cache,
        timing_cache=timing_cache,
        workspace_gb=workspace_gb,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
    )
    s = report.stamp_fields
    typer.echo(
        f"wrote {report.engine} ({s.precision}, batch {s.min_batch}/{s.opt_batch}/{s.max_batch}, "
        f"TensorRT {s.tensorrt_version}, {s.gpu_name} sm {s.compute_capability}) in {report.build_seconds:.0f} s; "
        f"stamp {report.stamp}"
        + (
            f"; {report.calibration_batches} calibration batches, cache {report.calib_cache}"
            if report.calib_cache
            else ""
        )
        + (f"; timing cache {report.timing_cache}" if report.timing_cache else "")
    )


def register(root: typer.Typer) -> None:
    """Add the `engine` command group to the root app."""
    root.add_typer(app, name="engine")
