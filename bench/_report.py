"""Printing a benchmark's two-column result table (shared by the bench scripts)."""

from __future__ import annotations

from collections.abc import Iterable


def print_table(title: str, rows: Iterable[tuple[str, str]]) -> None:
    """Print ``(step, result)`` rows as a rich table, 120 columns wide so logs are not wrapped."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("step")
    table.add_column("result", justify="right")
    for row in rows:
        table.add_row(*row)
    Console(width=120).print(table)
