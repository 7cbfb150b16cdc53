"""`detops models ...`: the variant table with published and measured figures."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

app = typer.Typer(help="Inspect the variant table.", no_args_is_help=True)


def measure_variant(name: str, *, image_size: int = 640) -> dict[str, Any]:
    """Build ``name`` and measure its parameters and GFLOPs the way its family publishes them."""
    import models

    family = models.family_module(name)
    model = models.build_model(name).eval()
    return {
        "params": family.count_params(model),
        "gflops": round(family.count_gflops(model, image_size=image_size), 3),
    }


def variant_rows(
    *, measure: bool, image_size: int = 640, include_tiny: bool = False, only: list[str] | None = None
) -> list[dict[str, Any]]:
    """One dict per variant: family, published figures and (optionally) measured params/GFLOPs.

    ``only`` restricts the table to those names (unknown names are a ``DetopsError``).
    """
    from rich.progress import track

    import models
    from detops.errors import DetopsError

    if only:
        for name in only:
            try:
                models.get_variant(name)
            except ValueError as exc:
                raise DetopsError(str(exc)) from None
        names = list(only)
    else:
        names = [n for n in models.VARIANTS if include_tiny or models.get_variant(n).published is not None]
    rows = []
    for name in track(names, description="measuring", disable=not measure, transient=True):
        variant = models.get_variant(name)
        pub = variant.published
        row: dict[str, Any] = {
            "name": name,
            "family": variant.family,
            "input_size": variant.input_size,
            "published": None
            if pub is None
            else {
                "map_50_95": pub.map_50_95,
                "params_m": pub.params_m,
                "params": pub.params_exact,
                "gflops": pub.gflops,
                "t4_ms_upstream": pub.t4_ms_upstream,
                "t4_ms_table": pub.t4_ms_table,
            },
        }
        if measure:
            row["measured"] = {"image_size": image_size, **measure_variant(name, image_size=image_size)}
        rows.append(row)
    return rows


@app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    measure: bool = typer.Option(True, help="Build each variant and measure params and GFLOPs."),
    image_size: int = typer.Option(640, help="Input size for the GFLOPs measurement."),
    include_tiny: bool = typer.Option(False, "--tiny", help="Include the test-only tiny rows."),
    only: list[str] | None = typer.Option(None, "--variant", help="Only this variant (repeatable)."),
) -> None:
    """List every buildable variant with published and measured parameters and GFLOPs."""
    rows = variant_rows(measure=measure, image_size=image_size, include_tiny=include_tiny, only=only)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="detops variants (published: COCO val2017, 640x640)")
    for col in (
        "variant",
        "mAP",
        "params pub",
        "params meas",
        "GFLOPs pub",
        "GFLOPs meas",
        "T4 ms (upstream/table)",
    ):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for row in rows:
        pub, meas = row["published"], row.get("measured")
        table.add_row(
            row["name"],
            f"{pub['map_50_95']:.1f}" if pub else "-",
            f"{pub['params']:,}" if pub else "-",
            f"{meas['params']:,}" if meas else "-",
            f"{pub['gflops']:.1f}" if pub else "-",
            f"{meas['gflops']:.2f}" if meas else "-",
            "-"
            if pub is None
            else f"{pub['t4_ms_upstream']:.2f} / "
            + ("-" if pub["t4_ms_table"] is None else f"{pub['t4_ms_table']:.2f}"),
        )
    # Pipes and logs get the full table rather than one wrapped to an 80-column default.
    Console(width=None if sys.stdout.isatty() else 160).print(table)
