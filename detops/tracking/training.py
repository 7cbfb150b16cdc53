"""``tracked_training``: the one way a training is tracked, whoever starts it.

``detops train``, ``detops demo --no-flow`` and the flow's ``train`` task all enter this context
manager around ``fit``/``resume``, so each produces the same MLflow run (see ``MlflowCallback``): the
resolved config as params, per-step and per-epoch metrics, the final COCO statistics and per-class AP,
the dataset input, system metrics, plots and the best checkpoint. Callers add their own tags (the
Prefect task adds the flow run's id and URL) and read the run id afterwards to log later stages
(export, artifact evaluation, profiles, INT8) into the same run.

    >>> with tracked_training(tags={"prefect.flow_run_id": "..."}) as tracking:
    ...     summary = fit("damo_yolo_t", data_root="data", epochs=3, out_dir="runs/t",
    ...                   callbacks=tracking.callbacks)
    >>> tracking.run_id
    '3f2a...'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from detops.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class Tracking:
    """What ``tracked_training`` yields: the engine ``callbacks`` to pass to ``fit`` (empty when
    tracking is off or this is not rank 0) and, once the run has started, its MLflow ``run_id``."""

    callbacks: list[Any] = field(default_factory=list)

    @property
    def run_id(self) -> str | None:
        """The MLflow run of this training (None when untracked)."""
        return next((getattr(cb, "run_id", None) for cb in self.callbacks), None)


@contextmanager
def tracked_training(
    *,
    track: bool | None = None,
    resume: bool = False,
    tags: Mapping[str, str] | None = None,
    settings: Settings | None = None,
    system_metrics: bool = True,
    upload_last: bool = False,
) -> Iterator[Tracking]:
    """Track the training run inside the block in MLflow when ``track`` (default: the settings'
    ``track``) is on, on rank 0 only (torchrun's other ranks get no callbacks).

    ``resume``: the block resumes a run directory; its recorded MLflow run is continued. ``tags`` are
    set on the run when it starts. A training that raises leaves a FAILED run behind. ``upload_last``:
    the training state goes to the artifact store after every epoch (see ``MlflowCallback``)."""
    from detops.tracking.callback import MlflowCallback

    settings = settings or get_settings()
    on = settings.track if track is None else track
    if not on or int(os.environ.get("RANK", "0")) != 0:
        yield Tracking()
        return
    with MlflowCallback(
        settings=settings, resume=resume, tags=tags, system_metrics=system_metrics, upload_last=upload_last
    ) as cb:
        yield Tracking(callbacks=[cb])
    if cb.run_id:
        log.debug("tracked: MLflow run %s", cb.run_id)
