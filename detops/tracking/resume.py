"""A training's state in the MLflow artifact store, so that a retry on another machine resumes it.

On a cluster a training's run directory lives on the disk of one pod, which a retry does not get
back. With ``upload_last`` the ``MlflowCallback`` uploads, after every epoch, what ``resume`` reads
from a run directory: ``metrics.jsonl`` (the history), ``checkpoints/best.pt`` when the epoch
improved it and ``checkpoints/last.pt`` (the full training state). ``restore_training_state`` finds
the unfinished MLflow run of the same planned training (tag ``detops.run_key``) and writes those
files back into an empty run directory, with the run's id, so ``resume`` continues that MLflow run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.settings import Settings, get_settings
from detops.tracking.credentials import tracking_env, without_userinfo
from detops.tracking.runs import write_run_id

RUN_KEY_TAG = "detops.run_key"
"""MLflow tag holding the planned training's key (dataset version, config, code, home): the runs of
one planned training, however many attempts it took."""

CHECKPOINT_DIR = "checkpoints"
HISTORY = "metrics.jsonl"
log = logging.getLogger(__name__)


def upload_training_state(client: Any, run_id: str, run_dir: Path, *, best_changed: bool) -> None:
    """Upload ``run_dir``'s history, ``best.pt`` (when ``best_changed``) and ``last.pt`` to MLflow run
    ``run_id`` through ``client`` (an ``MlflowClient``), ``last.pt`` last."""
    if (run_dir / HISTORY).is_file():
        client.log_artifact(run_id, str(run_dir / HISTORY))
    if best_changed and (run_dir / "best.pt").is_file():
        client.log_artifact(run_id, str(run_dir / "best.pt"), artifact_path=CHECKPOINT_DIR)
    client.log_artifact(run_id, str(run_dir / "last.pt"), artifact_path=CHECKPOINT_DIR)


def restore_training_state(
    run_key: str, *, variant: str, run_dir: str | Path, settings: Settings | None = None
) -> str | None:
    """Fill the empty ``run_dir`` from the newest unfinished MLflow run of experiment
    ``detops-<variant>`` tagged ``detops.run_key = run_key`` that holds ``checkpoints/last.pt``:
    its ``last.pt``, ``best.pt`` (when uploaded), ``metrics.jsonl`` and ``mlflow_run_id``. Returns
    that run's id, or None when there is no such run (the training starts afresh). ``last.pt``
    takes its name last: a directory holding it is complete."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    run_dir = Path(run_dir)
    with tracking_env(settings) as uri:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(f"detops-{variant}")
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
            order_by=["attributes.start_time DESC"],
        )
        for run in runs:
            if run.info.status == "FINISHED":
                continue
            stored = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, CHECKPOINT_DIR)}
            if "last.pt" not in stored:
                continue
            wanted = [HISTORY, f"{CHECKPOINT_DIR}/best.pt", f"{CHECKPOINT_DIR}/last.pt"]
            if "best.pt" not in stored:
                wanted.remove(f"{CHECKPOINT_DIR}/best.pt")
            run_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
                try:
                    local = [client.download_artifacts(run.info.run_id, path, tmp) for path in wanted]
                except (MlflowException, OSError) as exc:
                    raise DetopsError(
                        f"MLflow run {run.info.run_id}: cannot fetch its training state to resume: "
                        f"{without_userinfo(str(exc))}"
                    ) from None
                write_run_id(run_dir, run.info.run_id)
                for path in local:  # last.pt is the last of them
                    os.replace(path, run_dir / Path(path).name)
            return str(run.info.run_id)
    return None


@contextmanager
def attempt_dir(
    run_dir: str | Path | None, *, run_key: str, variant: str, settings: Settings | None = None
) -> Iterator[tuple[Path, bool]]:
    """Where one attempt of a planned training runs, and whether it resumes an earlier one.

    With a ``run_dir``: that directory, resumed when it holds a ``last.pt``. Without one (a run of the
    ``train`` deployment, whose retry may land on another machine): a fresh scratch directory under
    ``<home>/scratch``, filled from the artifact store when an earlier attempt left its state there
    (``restore_training_state``), and removed when the block ends, whatever happened in it."""
    settings = settings or get_settings()
    if run_dir is not None:
        path = Path(run_dir)
        resumed = (path / "last.pt").is_file()
        _log_resume(variant, path, resumed)
        yield path, resumed
        return
    scratch = Path(settings.home) / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"train-{variant}-", dir=scratch))
    try:
        resumed = (
            restore_training_state(run_key, variant=variant, run_dir=path, settings=settings) is not None
        )
        _log_resume(variant, path, resumed)
        yield path, resumed
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _log_resume(variant: str, run_dir: Path, resumed: bool) -> None:
    if resumed:
        history = run_dir / HISTORY
        epochs = len(history.read_text().splitlines()) if history.is_file() else 0
        log.info("%s: resuming from epoch %s of an earlier attempt", variant, epochs)
