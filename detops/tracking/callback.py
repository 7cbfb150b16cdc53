"""``MlflowCallback``: one MLflow run per training run, fed through the engine's callback hooks.

What a run gets:

* params: the resolved training config (``config.json`` minus the recipe, which is an artifact);
* tags: code version (``detops.git_commit``, ``detops.git_dirty``, ``detops.version``), variant, run
  directory, dataset version (``detops.dataset_digest``, ``detops.dataset_tracked_by``,
  ``detops.dataset_git_revision``);
* a dataset input (``mlflow.log_input``, context ``training``) named after the data root, whose
  digest is the DVC hash when DVC tracks it;
* metrics: per step ``step/<loss>`` and ``step/lr`` (x = optimizer iteration), per epoch the
  metrics.jsonl record (``train/*``, ``val/*``, ``time_s``; x = epoch), and at the end the best
  checkpoint's 12 COCO statistics ``final/<name>`` and per-class ``final/AP_class/<class>``;
  system metrics (CPU, memory, disk, network; GPU when present) sampled by MLflow;
* artifacts: ``best.pt``, ``config.json``, ``metrics.jsonl``, ``summary.json``, ``final_eval.json``
  and ``plots/`` (loss and mAP curves, precision-recall at IoU 0.5, per-class AP); with
  ``upload_last``, also ``checkpoints/last.pt`` (and ``best.pt`` when it changed) and
  ``metrics.jsonl`` after every epoch, so another machine can resume the run from the artifact
  store (``detops.tracking.resume``).

The run id is written to ``<run dir>/mlflow_run_id``; resuming that run directory continues the same
MLflow run. Use the callback as a context manager so that a run whose training raised is closed as
FAILED and the credentials leave the environment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from detops.fileio import write_json
from detops.settings import Settings, get_settings
from detops.tracking.credentials import tracking_env
from detops.tracking.runs import ensure_experiment, metric_key, run_id_for, write_run_id

_BATCH = 1000


class MlflowCallback:
    """Engine callback logging one training run to the settings' MLflow tracking store.

    Args:
        settings: tracking URI and credentials (default: the process settings).
        experiment: experiment name (default ``detops-<variant>``).
        run_name: MLflow run name (default: the run directory's name).
        system_metrics: let MLflow sample CPU/memory/disk/GPU during the run.
        final_eval: evaluate the best checkpoint at the end for the 12 statistics, per-class AP and
            the precision-recall curve (one pass over the validation split).
        step_every: log the per-step metrics of every ``step_every``-th step (1: all).
        resume: the engine is resuming the run directory: continue the MLflow run it records
            (``mlflow_run_id``) instead of starting a new one.
        tags: further run tags set when the run starts (e.g. the Prefect flow run's id and URL).
        upload_last: after every epoch, upload ``metrics.jsonl``, then ``best.pt`` when the epoch
            improved it, then ``last.pt`` (in that order: whoever sees a ``last.pt`` also sees the
            history and best checkpoint up to its epoch). Off by default: a checkpoint of a large
            variant is hundreds of MB per epoch.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        system_metrics: bool = True,
        final_eval: bool = True,
        step_every: int = 1,
        resume: bool = False,
        tags: Mapping[str, str] | None = None,
        upload_last: bool = False,
    ) -> None:
        self.settings = settings or get_settings()
        self.experiment = experiment
        self.run_name = run_name
        self.system_metrics = system_metrics
        self.final_eval = final_eval
        self.step_every = max(1, step_every)
        self.resume = resume
        self.tags = dict(tags or {})
        self.upload_last = upload_last
        self._written: dict[str, str] = {}  # checkpoints written this epoch: kind -> path
        self.run_id: str | None = None
        self._config: dict[str, Any] = {}
        self._run_dir: Path | None = None
        self._pending: list[Any] = []
        self._stack: ExitStack | None = None
        self._client: Any = None
        self._entered = False

    # context management: credentials in the environment only while the run is open
    def __enter__(self) -> MlflowCallback:
        self._open_env()
        self._entered = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.run_id is not None and self._active():
                self._end("FAILED" if exc_type is not None else "FINISHED")
        finally:
            self._close_env()
            self._entered = False

    def _open_env(self) -> None:
        if self._stack is None:
            self._stack = ExitStack()
            self._stack.enter_context(tracking_env(self.settings))

    def _close_env(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def _active(self) -> bool:
        import mlflow

        run = mlflow.active_run()
        return run is not None and run.info.run_id == self.run_id

    def _end(self, status: str) -> None:
        import mlflow

        try:
            self._flush()
        except Exception:
            if status != "FAILED":
                raise
            # Closing a failed run: the training error matters more than metrics still queued.
        mlflow.end_run(status=status)

    # engine hooks
    def on_train_start(self, *, config: dict[str, Any], run_dir: str) -> None:
        """Open (or, for a resumed run directory, reopen) the MLflow run and log config, tags and
        the dataset input."""
        import mlflow
        from mlflow import MlflowClient

        self._open_env()
        self._config = dict(config)
        self._run_dir = Path(run_dir)
        uri = self.settings.mlflow_tracking_uri
        mlflow.set_tracking_uri(uri)
        self._client = MlflowClient(tracking_uri=uri)
        previous = run_id_for(run_dir) if self.resume else None
        if previous is not None and not self._run_exists(previous):
            previous = None
        experiment_id = None
        if previous is None:
            name = self.experiment or f"detops-{config['variant']}"
            experiment_id = ensure_experiment(name, settings=self.settings)
        # the experiment goes to start_run, not to mlflow.set_experiment: that one is process-wide and
        # trainings may run in threads side by side (the flow's task runner)
        run = mlflow.start_run(
            run_id=previous,
            experiment_id=experiment_id,
            run_name=None if previous else (self.run_name or Path(run_dir).name),
            log_system_metrics=self.system_metrics,
        )
        self.run_id = run.info.run_id
        write_run_id(run_dir, self.run_id)
        self._log_params(config, existing=run.data.params if previous else {})
        self._log_provenance(config)

    def _run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def _log_params(self, config: dict[str, Any], *, existing: dict[str, str]) -> None:
        from mlflow.entities import Param

        # A resumed run keeps its first values (params are immutable in MLflow); new keys are added.
        params = [Param(metric_key(k), str(v)) for k, v in config.items() if metric_key(k) not in existing]
        for i in range(0, len(params), 100):
            self._client.log_batch(self._rid, params=params[i : i + 100])

    def _log_provenance(self, config: dict[str, Any]) -> None:
        import mlflow
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

        from detops.tracking.provenance import code_version, dataset_version

        root = self.settings.project_root
        code = code_version(root)
        data = dataset_version(config["data"], project_root=root)
        tags = {
            "detops.variant": config["variant"],
            "detops.run_dir": str(self._run_dir),
            "detops.git_commit": code["git_commit"],
            "detops.git_dirty": code["git_dirty"],
            "detops.version": code["detops_version"],
            "detops.dataset_digest": data.digest,
            "detops.dataset_tracked_by": data.tracked_by,
            "detops.dataset_git_revision": data.git_revision,
            "mlflow.source.git.commit": code["git_commit"],
            **self.tags,
        }
        mlflow.set_tags(tags)
        dataset = MetaDataset(  # type: ignore[abstract]  # abstract in the stubs only
            source=LocalArtifactDatasetSource(data.root), name=Path(data.root).name, digest=data.digest[:32]
        )
        mlflow.log_input(
            dataset,
            context="training",
            tags={
                "dvc_md5" if data.tracked_by == "dvc" else "content_md5": data.digest,
                "git_revision": data.git_revision,
                "files": str(data.files),
                "train_split": str(config.get("train_split", "train")),
                "val_split": str(config.get("val_split", "val")),
            },
        )

    @property
    def _rid(self) -> str:
        assert self.run_id is not None, "on_train_start was not called"
        return self.run_id

    def on_step_end(self, *, step: int, epoch: int, metrics: dict[str, float]) -> None:
        """Queue the step's losses and learning rate (sent in batches at the end of each epoch)."""
        from mlflow.entities import Metric

        if step % self.step_every:
            return
        now = int(time.time() * 1000)
        self._pending.extend(Metric(f"step/{metric_key(k)}", float(v), now, step) for k, v in metrics.items())
        if len(self._pending) >= _BATCH:
            self._flush()

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> None:
        """Log the epoch's record (train losses, learning rate, val mAP, time) at x = epoch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(
            Metric(metric_key(k), float(v), now, epoch)
            for k, v in metrics.items()
            if isinstance(v, int | float)
        )
        self._flush()
        if self.upload_last:
            self._upload_state()

    def on_checkpoint(self, *, path: str, kind: str, epoch: int) -> None:
        """Note the checkpoint written (uploaded with the epoch's record, see ``upload_last``)."""
        self._written[kind] = path

    def _upload_state(self) -> None:
        from detops.tracking.resume import upload_training_state

        written, self._written = self._written, {}
        if self._run_dir is not None and "last" in written:
            upload_training_state(self._client, self._rid, self._run_dir, best_changed="best" in written)

    def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            self._client.log_batch(self._rid, metrics=batch)

    def on_train_end(self, *, summary: dict[str, Any]) -> None:
        """Evaluate the best checkpoint, draw the plots, upload the artifacts and close the run."""
        run_dir = Path(summary["run_dir"])
        history = summary.get("history", [])
        plots = run_dir / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        from detops.tracking import plots as plotting

        plotting.plot_curves(history, prefix="train/loss", title="training loss", out=plots / "loss.png")
        plotting.plot_curves(history, prefix="val/AP", title="val mAP", out=plots / "map.png")
        best = Path(summary["checkpoints"]["best"])
        final: dict[str, Any] | None = None
        if self.final_eval and best.is_file():
            final = self._final_evaluation(best)
            write_json(run_dir / "final_eval.json", final)
            plotting.plot_pr_curve(final["pr_recall"], final["pr_precision"], out=plots / "pr_iou50.png")
            plotting.plot_class_ap(final["per_class"], out=plots / "class_ap.png")
            self._log_final_metrics(final, step=int(summary.get("best_epoch", 0)))
        self._client.log_batch(
            self._rid,
            metrics=[],
            tags=_tags(
                {"detops.best_epoch": summary.get("best_epoch"), "detops.best_map": summary.get("best_map")}
            ),
        )
        for name in ("config.json", "metrics.jsonl", "summary.json", "final_eval.json"):
            if (run_dir / name).is_file():
                self._client.log_artifact(self._rid, str(run_dir / name))
        if best.is_file():
            self._client.log_artifact(self._rid, str(best), artifact_path="checkpoints")
        self._client.log_artifacts(self._rid, str(plots), artifact_path="plots")
        self._end("FINISHED")
        if not self._entered:
            self._close_env()

    def _final_evaluation(self, best: Path) -> dict[str, Any]:
        from detops.tracking.final_eval import final_evaluation

        cfg = self._config
        return final_evaluation(
            best,
            data_root=cfg["data"],
            split=str(cfg.get("val_split", "val")),
            img_size=cfg.get("img_size"),
            batch_size=int(cfg.get("eval_batch_size") or 8),
        )

    def _log_final_metrics(self, final: dict[str, Any], *, step: int) -> None:
        from mlflow.entities import Metric

        from detops.evaluation import STAT_NAMES

        now = int(time.time() * 1000)
        self._pending.extend(Metric(f"final/{k}", float(final[k]), now, step) for k in STAT_NAMES)
        self._pending.extend(
            Metric(f"final/AP_class/{metric_key(name)}", float(ap), now, step)
            for name, ap in final["per_class"].items()
            if ap is not None
        )
        self._flush()


def _tags(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in values.items()]
