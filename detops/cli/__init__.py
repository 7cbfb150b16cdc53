"""The ``detops`` console script: one Typer app, one sub-module per command group.

``main()`` turns a ``DetopsError`` into a one-line ``error: ...`` on stderr and its exit code, so bad
input never ends in a traceback.
"""

from __future__ import annotations

import sys

import typer

from detops.cli import data, demo, deploy, engine, models, tracking, weights
from detops.errors import DetopsError

app = typer.Typer(
    name="detops",
    help="Reproducible train / evaluate / deploy pipelines for real-time object detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(weights.app, name="weights")
engine.register(app)
deploy.register(app)
tracking.register(app)
demo.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    try:
        # In non-standalone mode click returns a command's typer.Exit code instead of exiting.
        result = app(args=argv, standalone_mode=False)
    except DetopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
