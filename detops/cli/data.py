"""`detops data ...` commands: synth, validate, version, pull."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Synthesise, validate and version COCO-format datasets.", no_args_is_help=True)


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Output directory (absent, empty, or an earlier synth output)."),
    train: int = typer.Option(128, "--train", help="Number of training images."),
    val: int = typer.Option(32, "--val", help="Number of validation images."),
    size: int = typer.Option(320, "--size", help="Nominal image side in pixels (sides vary 0.8-1.25x)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
) -> None:
    """Write a synthetic COCO-format detection dataset (shapes on textured backgrounds) to OUT."""
    from rich.console import Console
    from rich.table import Table

    from detops.data.synth import CLASSES, synthesize

    summary = synthesize(out, train=train, val=val, size=size, seed=seed)
    table = Table(title=f"synthetic dataset in {summary.root}")
    for col in ("split", "images", "annotations", "crowd", "empty images"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, n in summary.images.items():
        table.add_row(
            split,
            str(n),
            str(summary.annotations[split]),
            str(summary.crowd[split]),
            str(summary.empty_images[split]),
        )
    console = Console()
    console.print(table)
    console.print("categories: " + ", ".join(f"{c.id}={c.name}" for c in CLASSES))
