"""The ``detops`` console script: one Typer app, one sub-module per command group.

``main()`` turns a ``DetopsError`` into a one-line ``error: ...`` on stderr and its exit code, so bad
input never ends in a traceback; any other exception becomes one ``error: unexpected ...`` line (exit
1) with a hint to rerun with ``detops --debug ...`` (or ``DETOPS_DEBUG=1``), which shows the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from detops.cli import (
    data,
    demo,
    deploy,
    engine,
    engine_build,
    models,
    orchestrate,
    quantize,
    registry,
    tracking,
    weights,
)
from detops.errors import DetopsError, worker_message

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
engine_build.register(app)
quantize.register(app)
tracking.register(app)
registry.register(app)
demo.register(app)
orchestrate.register(app)

_DEBUG_HINT = "rerun with `detops --debug ...` (or DETOPS_DEBUG=1) for the traceback"
_debug = {"on": False}


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an error (also: environment DETOPS_DEBUG=1)."
    ),
) -> None:
    """Reproducible train / evaluate / deploy pipelines for real-time object detectors."""
    _debug["on"] = _debug["on"] or debug


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (a DataLoader worker's: the worker's own message)."""
    text = worker_message(str(exc)).strip()
    return text.splitlines()[0] if text else ""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Exit codes: 0 success, 1 a check that ran and failed or an unexpected error, 2 bad input (and
    click usage errors), 130 interrupted."""
    _debug["on"] = os.environ.get("DETOPS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    try:
        # In non-standalone mode click returns a command's typer.Exit code instead of exiting.
        result = app(args=argv, standalone_mode=False)
    except DetopsError as exc:
        if _debug["on"]:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if _debug["on"]:
            traceback.print_exc()
        message = _one_line(exc)
        print(
            f"error: unexpected {type(exc).__name__}{': ' + message if message else ''} ({_DEBUG_HINT})",
            file=sys.stderr,
        )
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
