"""The ``detops`` console script: one Typer app, one sub-module per command group.

A command line the parser refuses (an unknown command or option, a missing argument, a value of the
wrong type) gets Typer's own usage message and exit 2, printed by Typer as in any Typer program.
``main()`` turns a ``DetopsError`` into a one-line ``error: ...`` on stderr and its exit code, so bad
input never ends in a traceback; so does an ``OSError`` about a path (an output directory that cannot
be created, a file where a directory is needed: ``error: PATH: reason``, exit 2); any other exception, a bug, becomes one ``error: unexpected ...`` line
(exit 1) with a hint to rerun with ``detops --debug ...`` (or ``DETOPS_DEBUG=1``), which shows the
traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from detops.cli import (
    compare,
    data,
    demo,
    deploy,
    engine,
    engine_build,
    models,
    orchestrate,
    quantize,
    registry,
    serve,
    tracking,
    weights,
)
from detops.errors import DetopsError, worker_message
from detops.tracking.credentials import without_userinfo

app = typer.Typer(
    name="detops",
    help="Reproducible train / evaluate / deploy pipelines for real-time object detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help and usage errors: paragraphs rewrapped to the terminal, no boxes in logs.
    rich_markup_mode=None,
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
serve.register(app)
demo.register(app)
orchestrate.register(app)
compare.register(app)

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
    """The first line of an exception's message (a DataLoader worker's: the worker's own message),
    with any URL's ``user:password@`` removed (MLflow's request errors quote the tracking URI)."""
    text = without_userinfo(worker_message(str(exc))).strip()
    return text.splitlines()[0] if text else ""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Exit codes: 0 success, 1 a check that ran and failed or an unexpected error, 2 bad input (and
    usage errors), 130 interrupted."""
    _debug["on"] = os.environ.get("DETOPS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    try:
        # Standalone mode: Typer prints a usage error itself, as any Typer program does, and every run
        # ends in SystemExit (0, 2 for a usage error, or a command's typer.Exit code). Typer >= 0.26
        # vendors click, so its usage errors are not click.ClickException and cannot be caught as such.
        app(args=argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except DetopsError as exc:
        if _debug["on"]:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug or the network
            return _unexpected(exc)
        # a path the command was given (or derived from one) that cannot be read or written
        if _debug["on"]:
            traceback.print_exc()
        # mkdir(parents=True, exist_ok=True) raises FileExistsError only for a file in the way
        why = "exists and is not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        print(f"error: {exc.filename}: {why or _one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        return _unexpected(exc)
    return 0


def _unexpected(exc: BaseException) -> int:
    """A bug: one line with the exception's type and message and how to see the traceback; exit 1."""
    if _debug["on"]:
        traceback.print_exc()
    message = _one_line(exc)
    print(
        f"error: unexpected {type(exc).__name__}{': ' + message if message else ''} ({_DEBUG_HINT})",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
