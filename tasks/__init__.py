"""Prefect tasks: thin wrappers (retries, caching, timeouts, tags) around ``detops`` library calls.

One module per stage: ``data`` (validate, version), ``train``, ``deploy`` (export, evaluate, profile,
TensorRT dispatch), ``registry`` (register, promote, report). ``retry`` decides which failures are
transient, ``caching`` builds the training cache key, ``presets`` holds the ``smoke``/``full`` sizes.
Nothing below this package imports Prefect.
"""
