"""`detops weights ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="weights commands.", no_args_is_help=True)
