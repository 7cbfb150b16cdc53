"""Prefect flows: composition and parameters only (no torch, no file I/O of their own).

``retrain`` (validate, version, train, deploy, register, promote, report) and ``benchmark`` (the
deploy stage alone for registry versions; what the ``t4`` pool runs). Deployments: ``prefect.yaml``.
"""
