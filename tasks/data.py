"""Data tasks: validate (the failure table becomes a Prefect table artifact) and version with DVC."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from tasks.retry import retry_transient


def _data_root(root: str | None) -> str:
    """``root`` or the project's ``data`` directory."""
    from detops.settings import get_settings

    return str(root) if root else str(get_settings().project_root / "data")


@task(name="validate-data", tags=["data"], timeout_seconds=1800)
def validate_data(root: str | None = None) -> dict[str, Any]:
    """Validate the dataset at ``root`` (default ``<project>/data``) with Great Expectations.

    Returns ``{"root", "success", "counts", "docs"}``. On failure, publishes the failed expectations
    as the ``data-validation`` table artifact and raises ``DetopsError`` (not retried)."""
    from detops.data.validate import validate_dataset
    from detops.errors import DetopsError
    from detops.settings import get_settings

    data = _data_root(root)
    report = validate_dataset(data, docs_dir=get_settings().home / "data-docs")
    if not report.success:
        create_table_artifact(
            key="data-validation",
            table=[
                {
                    "split": f.split,
                    "check": f.description,
                    "expectation": f"{f.expectation}({f.column})",
                    "failed": "error" if f.count is None else f.count,
                    "example ids": ", ".join(f.examples) if not f.error else f.error.splitlines()[0][:80],
                }
                for f in report.failures
            ],
            description=f"Failed expectations in {data}: the flow stopped before training.",
        )
        raise DetopsError(f"{data}: failed validation ({len(report.failures)} expectation(s))", exit_code=1)
    return {
        "root": data,
        "success": True,
        "counts": report.counts,
        "docs": str(report.docs_path) if report.docs_path else None,
    }


# Transient failures of the S3 remote (network, endpoint errors) are retried with backoff.
S3_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [5, 20, 60],
    "retry_condition_fn": retry_transient,
}


@task(name="version-data", tags=["data", "s3"], timeout_seconds=1800, **S3_RETRIES)
def version_data(root: str | None = None, *, push: bool = True) -> dict[str, Any]:
    """``dvc add`` (and push) the dataset at ``root``; ``{"md5", "files", "remote", "pushed"}``.
    Network failures of the push are retried with backoff."""
    from detops.data.versioning import version_dataset
    from detops.settings import get_settings

    # the flow's validate-data step has just validated this dataset: not a second time here
    v = version_dataset(_data_root(root), settings=get_settings(), push=push, validate=False)
    return {**v.to_dict(), "root": _data_root(root), "md5": v.md5, "pushed": v.pushed}


@task(
    name="pull-data",
    task_run_name="pull-data-{version}",
    tags=["data", "s3"],
    timeout_seconds=3600,
    **S3_RETRIES,
)
def pull_data(version: str) -> dict[str, Any]:
    """Pull dataset ``version`` from the configured DVC remote on this worker and validate it; the
    dataset dict of ``version_data`` (``{"version", "md5", "remote", "files", "root"}``; ``root`` is
    where this worker put it). An unknown version or unreachable remote stops the flow here, before
    any training."""
    from detops.data.versioning import check_version, pull_version, remote_url
    from detops.settings import get_settings

    settings = get_settings()
    root = pull_version(check_version(version), settings=settings)
    checked = validate_data.fn(str(root))
    files = sum(1 for p in root.rglob("*") if p.is_file())
    return {
        "version": version,
        "md5": version,
        "remote": remote_url(settings),
        "files": files,
        "root": checked["root"],
    }
