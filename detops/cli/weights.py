"""`detops weights ...`: bring official release checkpoints into the platform."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Import official release checkpoints.", no_args_is_help=True)


@app.command("import")
def import_cmd(
    variant: str = typer.Argument(..., help="Variant name, e.g. damo_yolo_t or rtdetrv2_s."),
    src: Path = typer.Argument(..., help="Official release file (.pth)."),
    dst: Path = typer.Argument(..., help="detops weight file to write (written atomically)."),
    num_classes: int = typer.Option(
        80, help="Classes of the target model; others re-initialise the class heads."
    ),
) -> None:
    """Map an official checkpoint onto this implementation, strictly, and save it."""
    from rich.console import Console

    from detops.cli import _validate as check
    from detops.weights import import_official

    check.variant(variant)
    check.at_least(num_classes, "--num-classes", 1)
    with Console(stderr=True).status(f"importing {src} as {variant}"):
        report = import_official(variant, src, dst, num_classes=num_classes)
    typer.echo(
        f"imported {src} -> {dst}: {variant}, {report.source_tensors} source tensors, "
        f"{report.model_tensors} model tensors, 0 missing, 0 unexpected"
    )
    if report.reinitialised:
        typer.echo(f"re-initialised for {report.num_classes} classes: {', '.join(report.reinitialised)}")
