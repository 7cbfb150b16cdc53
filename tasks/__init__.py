"""Prefect tasks: thin wrappers (retries, caching, timeouts, tags) around ``detops`` library calls.

One module per stage: ``data`` (validate, version), ``train``, ``deploy`` (export, evaluate, profile,
TensorRT dispatch), ``registry`` (register, promote, report). ``retry`` decides which failures are
transient, ``caching`` builds the training cache key.
``runtime`` forwards the library's log lines to Prefect and names the flow run in MLflow tags.
Nothing below this package imports Prefect.
"""

from tasks.runtime import forward_library_logs

# The library logs through the standard `detops` logger; this attaches Prefect's run log handler to it
# (what PREFECT_LOGGING_EXTRA_LOGGERS=detops would do, without depending on the worker's environment).
forward_library_logs()
