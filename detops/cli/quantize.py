"""`detops quantize`: an exported fp32 ONNX file statically quantised to int8 for the CPU."""

from __future__ import annotations

from pathlib import Path

import typer

from detops.errors import DetopsError


def quantize_cmd(
    onnx_file: Path = typer.Argument(..., help="fp32 ONNX file written by detops export."),
    calib_data: Path = typer.Option(
        ..., "--calib-data", help="Dataset root whose images calibrate activations."
    ),
    calib_images: int = typer.Option(32, "--calib-images", help="Number of calibration images."),
    calib_split: str = typer.Option("val", "--calib-split", help="Split the calibration images come from."),
    method: str = typer.Option(
        "minmax", "--method", help="Activation calibration: minmax, entropy or percentile."
    ),
    exclude: list[str] = typer.Option(
        None, "--exclude", help="Node to keep in fp32 (repeatable; replaces the default: the graph's tail)."
    ),
    quantize_all: bool = typer.Option(False, "--quantize-all", help="Keep no node in fp32."),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (default <stem>.int8.onnx)."),
) -> None:
    """ONNX Runtime static quantization (QDQ, per-channel int8 weights, uint8 activations) calibrated
    on the dataset's images with the artifact's own preprocessing; prints the layers kept in fp32."""
    from detops.deploy.artifact import onnx_input_names, read_onnx_metadata
    from detops.deploy.calibration import calibration_samples
    from detops.deploy.quantize import METHODS, quantize_onnx

    if method not in METHODS:
        raise DetopsError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if calib_images < 1:
        raise DetopsError(f"--calib-images must be at least 1, got {calib_images}")
    if quantize_all and exclude:
        raise DetopsError("give either --exclude NODE or --quantize-all, not both")
    if not onnx_file.is_file():
        raise DetopsError(f"{onnx_file}: no such ONNX file")
    meta = read_onnx_metadata(onnx_file)
    samples = calibration_samples(
        calib_data, meta=meta, input_names=onnx_input_names(onnx_file), n=calib_images, split=calib_split
    )
    from rich.console import Console

    with Console(stderr=True).status(f"calibrating on {len(samples)} images ({method}) and quantizing"):
        report = quantize_onnx(
            onnx_file,
            calib_samples=samples,
            out=out,
            method=method,
            exclude=[] if quantize_all else (list(exclude) if exclude else None),
        )
    kept = ", ".join(report.excluded_weight_layers) or "none"
    typer.echo(
        f"wrote {report.path} (int8 QDQ, {report.method} calibration on {report.calib_images} images, "
        f"{report.quantized_nodes} quantized tensors); kept in fp32: {len(report.excluded_nodes)} nodes, "
        f"weight layers: {kept}"
    )


def register(app: typer.Typer) -> None:
    """Add the `quantize` command to the root app."""
    app.command("quantize")(quantize_cmd)
