"""Where the library's messages go: one ``detops`` logger, a short console, a full log file.

Every module logs through ``logging.getLogger(__name__)`` (a child of ``detops``); nothing in the
library prints progress itself. ``setup_logging`` is the one call that the console script, the demo and
the Prefect tasks share:

* console (stdout): the ``detops`` records at INFO as bare messages (one line per stage, one per
  epoch); with ``verbose``, DEBUG records and the INFO records of other libraries (Prefect's run
  states, for instance) too. Warnings and errors of any library always reach the console (stderr).
* file: every record at DEBUG, with time, level and logger, in ``<home>/logs/<command>-<UTC time>.log``
  (Python warnings included).

    >>> setup_logging(log_file=log_path(settings.home, "demo"))
    >>> logging.getLogger("detops.demo").info("[1/3] synthesising ...")
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path

LOGGER = "detops"
_FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s"
_OWN = "_detops_handler"  # marks the handlers setup_logging added, so a second call replaces them


class _Below(logging.Filter):
    """Passes records below ``level`` (the stdout handler; stderr takes the rest)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def _is_ours(record: logging.LogRecord) -> bool:
    """Whether ``record`` comes from the ``detops`` logger or one of its children."""
    return record.name == LOGGER or record.name.startswith(LOGGER + ".")


class _QuietOthers(logging.Filter):
    """On a console that is not verbose: records of other libraries only from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or _is_ours(record)


def log_path(home: str | Path, command: str, *, now: dt.datetime | None = None) -> Path:
    """``<home>/logs/<command>-<YYYYmmdd-HHMMSS>.log`` (UTC)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    return Path(home) / "logs" / f"{command}-{stamp}.log"


def _mark(handler: logging.Handler) -> logging.Handler:
    setattr(handler, _OWN, True)
    return handler


def setup_logging(*, verbose: bool = False, log_file: str | Path | None = None) -> Path | None:
    """Send the ``detops`` logger to a short console and, with ``log_file`` (see ``log_path``), every
    record to that file; returns the file.

    Calling it again replaces the handlers of the previous call (tests, a command calling another).
    Other libraries' console handlers (Prefect's on the root logger) are filtered, not removed: they
    keep printing warnings; their INFO lines only reach the console with ``verbose``.
    """
    _adopt_mlflow_logger()
    root, ours = logging.getLogger(), logging.getLogger(LOGGER)
    for logger in (root, ours):
        for handler in [h for h in logger.handlers if getattr(h, _OWN, False)]:
            logger.removeHandler(handler)
            handler.close()

    file_handler: logging.Handler | None = None
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
        root.addHandler(_mark(file_handler))  # every library's records, ours included (they propagate)

    out = logging.StreamHandler(sys.stdout)
    out.setLevel(logging.DEBUG if verbose else logging.INFO)
    out.addFilter(_Below(logging.WARNING))
    out.setFormatter(logging.Formatter("%(message)s"))
    ours.addHandler(_mark(out))
    ours.setLevel(logging.DEBUG)
    # Our records propagate too, so the file and any root handler (Prefect's, a test's) see them;
    # the console handlers on the root leave out those below WARNING (stdout already has them) and,
    # unless verbose, other libraries' INFO lines.
    consoles = [h for h in root.handlers if _is_console(h)]
    if not consoles:
        err = logging.StreamHandler(sys.stderr)
        err.setLevel(logging.INFO if verbose else logging.WARNING)
        err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(_mark(err))
        consoles = [err]
    for handler in consoles:
        handler.filters = [f for f in handler.filters if not isinstance(f, _QuietOthers | _NotOursBelow)]
        handler.addFilter(_NotOursBelow())
        if not verbose:
            handler.addFilter(_QuietOthers())
    # lower the root's level to INFO (DEBUG when verbose), never raise it (a test may capture DEBUG)
    current = root.level if root.level != logging.NOTSET else logging.WARNING
    root.setLevel(min(current, logging.DEBUG if verbose else logging.INFO))
    if file_handler is not None:
        logging.captureWarnings(True)  # into the file (and, as warnings, the console)
    return None if log_file is None else Path(log_file)


def _adopt_mlflow_logger() -> None:
    """MLflow gives its logger its own stderr handler at INFO (database set-up, system-metrics
    threads) unless ``MLFLOW_CONFIGURE_LOGGING`` is false; its records then reach the root's handlers
    like any library's: the log file, and the console from WARNING up."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    if "mlflow" in sys.modules:  # imported before us: its handler is there already
        mlflow_logger = logging.getLogger("mlflow")
        for handler in [h for h in mlflow_logger.handlers if _is_console(h)]:
            mlflow_logger.removeHandler(handler)
        mlflow_logger.propagate = True


def _is_console(handler: logging.Handler) -> bool:
    """A handler writing to a terminal stream: not a file, not pytest's log capture."""
    return (
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and not type(handler).__module__.startswith("_pytest")
    )


class _NotOursBelow(logging.Filter):
    """On another console handler: leaves out our records below WARNING (stdout already shows them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_ours(record) or record.levelno >= logging.WARNING
