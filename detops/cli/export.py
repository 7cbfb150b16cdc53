"""`detops export`: a deployed detector as a verified ONNX file."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `export` command to the root app."""
    app.command("export")(export_cmd)


def export_cmd(
    variant: str = typer.Argument(..., help="Variant name, e.g. damo_yolo_t."),
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write (atomically)."),
    weights: Path | None = typer.Option(
        None, help="detops weight file or training checkpoint; default: random init."
    ),
    img_size: int | None = typer.Option(None, help="Square input size; default the variant's (640)."),
    opset: int = typer.Option(17, min=17, help="ONNX opset."),
) -> None:
    """Fuse, export to ONNX with a dynamic batch axis, and check ONNX Runtime against PyTorch."""
    import models
    from detops.cli import _validate as check
    from detops.export import export_onnx
    from detops.weights import load_weights

    row = check.variant(variant)
    check.input_size(row, img_size if img_size is not None else row.input_size)
    num_classes = 80
    state = None
    if weights is not None:
        payload = load_weights(weights, variant=variant)
        num_classes, state = int(payload["num_classes"]), payload["model"]
    model = models.build_model(variant, num_classes=num_classes)
    if state is not None:
        model.load_state_dict(state, strict=True)
    from rich.console import Console

    with Console(stderr=True).status(f"exporting {variant} and checking it with ONNX Runtime"):
        report = export_onnx(variant, model, out, image_size=img_size, opset=opset)
    errors = ", ".join(f"{k} {v:.1e}" for k, v in report.max_rel_error.items())
    typer.echo(
        f"wrote {report.path} (opset {report.opset}); ONNX Runtime vs PyTorch relative error: {errors}"
    )
