"""Prefect flows: composition and parameters only (no torch, no file I/O of their own).

Empty until the orchestration issue: the library functions the flows will compose are in ``detops``
(``detops.data``, ``detops.engine``, ``detops.evaluation``, ``detops.export``), and ``detops demo``
runs the same steps directly today.
"""
