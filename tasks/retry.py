"""Which failures a task retries: transient ones (S3, MLflow, network), never bad data."""

from __future__ import annotations

from typing import Any

from detops.errors import DetopsError

# Exception class names (any module) that mean "the other end was briefly unavailable": requests,
# urllib3, botocore and MLflow's REST client raise these; matching names keeps the heavy imports out.
TRANSIENT_NAMES: frozenset[str] = frozenset(
    {
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "TimeoutError",
        "ProtocolError",
        "MaxRetryError",
        "NewConnectionError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "RestException",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "BrokenPipeError",
    }
)
# HTTP statuses worth another try (MLflow's RestException carries them as error codes too).
TRANSIENT_CODES: frozenset[str] = frozenset(
    {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "RESOURCE_EXHAUSTED", "REQUEST_LIMIT_EXCEEDED"}
)


def is_transient(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a network/service hiccup worth a retry.

    A ``DetopsError`` is bad input or a failed check: never transient, even when it wraps a
    connection error (the library has already decided it is final).
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DetopsError):
            return False
        names = {cls.__name__ for cls in type(exc).__mro__}
        if names & TRANSIENT_NAMES:
            if "RestException" in names:
                return str(getattr(exc, "error_code", "")) in TRANSIENT_CODES
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failed state's exception is transient."""
    try:
        state.result()
    except BaseException as exc:  # the failed state re-raises its exception here
        return is_transient(exc)
    return False
