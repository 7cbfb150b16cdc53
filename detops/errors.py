"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class DetopsError(Exception):
    """A user-facing error: bad input, a missing file, a failed gate.

    The message should name the file, the field and the offending value. ``exit_code`` is what the
    CLI exits with (2 for bad input by default; 1 for a check that ran and failed).
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
