"""What the tasks add around the library as Prefect tasks: the library's log lines in the run's
logs, and the flow run's identity as MLflow tags."""

from __future__ import annotations

import logging
from typing import Any

from prefect.logging.handlers import APILogHandler

from detops.logs import LOGGER


class RunLogHandler(APILogHandler):
    """Prefect's API log handler for the ``detops`` logger, silent outside a flow or task run (the
    library also logs from the CLI, where there is no run to attach a line to)."""

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        super().emit(record)


def forward_library_logs() -> None:
    """Send the ``detops`` logger's INFO lines (stage lines, one line per epoch) to the Prefect run
    they are logged in; idempotent. On a worker, where nothing configured the logger, it is set to
    INFO so those lines are not dropped (they also reach the console through Prefect's handlers)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, RunLogHandler) for h in logger.handlers):
        handler = RunLogHandler()
        handler.setLevel(logging.INFO)
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def flow_run_tags() -> dict[str, str]:
    """MLflow tags naming the Prefect flow run this task runs in: ``prefect.flow_run_id``,
    ``prefect.flow_run_name``, ``prefect.deployment`` and, when the API has a UI address,
    ``prefect.flow_run_url``; empty outside a flow run."""
    from prefect.runtime import deployment, flow_run

    run_id: Any = flow_run.id
    if not run_id:
        return {}
    tags = {"prefect.flow_run_id": str(run_id), "prefect.flow_run_name": str(flow_run.name)}
    if deployment.name:
        tags["prefect.deployment"] = str(deployment.name)
    url = flow_run.ui_url
    if url:
        tags["prefect.flow_run_url"] = str(url)
    return tags
