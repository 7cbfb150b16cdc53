"""Experiment tracking with MLflow, plugged into the engine through its callback interface.

    >>> from detops.tracking import MlflowCallback, log_to_run
    >>> with MlflowCallback(settings=get_settings()) as cb:
    ...     fit("damo_yolo_t", data_root="data", epochs=3, out_dir="runs/t", callbacks=[cb])
    >>> log_to_run(cb.run_id, metrics={"onnx/AP": 0.41}, artifacts=["model.onnx"])

A training run records its MLflow run id in ``<run dir>/mlflow_run_id`` (``run_id_for(run_dir)``), so
later stages (export, evaluate, profile, register) log into the same run. mlflow is imported inside
the functions that need it; importing this package stays cheap.
"""

from detops.tracking.callback import MlflowCallback
from detops.tracking.credentials import tracking_env
from detops.tracking.runs import RUN_ID_FILE, log_to_run, resolve_run_id, run_id_for

__all__ = ["RUN_ID_FILE", "MlflowCallback", "log_to_run", "resolve_run_id", "run_id_for", "tracking_env"]
