"""Prefect tasks: thin wrappers (retries, caching, tags) around ``detops`` library calls.

Empty until the orchestration issue; see ``flows``.
"""
