"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations

import re

# torch's DataLoader re-raises a worker's exception as ``type(exc)(text)`` where ``text`` is
# "Caught <Type> in DataLoader worker process N.\nOriginal Traceback (most recent call last): ...",
# ending in the worker's own "<module>.<Type>: <message>" line.
_WORKER_TEXT = re.compile(r"\ACaught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def worker_message(text: str) -> str:
    """The original message inside a DataLoader worker's re-raised exception text, else ``text``.

    >>> worker_message("Caught DetopsError in DataLoader worker process 0.\\n"
    ...     "Original Traceback (most recent call last):\\n  ...\\ndetops.errors.DetopsError: bad file x\\n")
    'bad file x'
    """
    if not _WORKER_TEXT.match(text):
        return text
    last = text.rstrip().splitlines()[-1]
    head, sep, tail = last.partition(": ")
    # "pkg.mod.Type: message" -> "message"; a bare "Type" line (no message) stays as it is.
    return tail if sep and re.fullmatch(r"[\w.]+", head) else last


class DetopsError(Exception):
    """A user-facing error: bad input, a missing file, a failed gate.

    The message should name the file, the field and the offending value. ``exit_code`` is what the
    CLI exits with (2 for bad input by default; 1 for a check that ran and failed). Raised inside a
    DataLoader worker, it reaches the main process with its original one-line message (torch rebuilds
    it from the worker's traceback text; ``worker_message`` recovers the message).
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(worker_message(message))
        self.exit_code = exit_code
