"""The model a registered version points to: an MLflow pyfunc detector around the exported ONNX file.

Anyone who loads a version (``mlflow.pyfunc.load_model("models:/detops-<variant>@champion")``) or
serves it (``mlflow models serve`` / ``detops serve``) gets detections on the original images, not the
graph's raw outputs:

* **input**: a DataFrame with one string column ``image``, one encoded image (JPEG, PNG, ... as read
  from its file) per row, base64-encoded (what JSON over HTTP carries; in Python raw ``bytes`` are
  accepted too);
* **params**: ``score`` (default 0.3, keep detections scoring at least this) and ``backend``
  (``ort``, the default, or ``openvino``);
* **output**: one row per input row with ``boxes`` (``[x0, y0, x1, y1]`` in the original image's
  pixels), ``scores``, ``labels`` (class names), ``category_ids`` and ``error`` (``None``, or a
  message naming the row of an entry that is no decodable image; its lists are empty and the other
  rows are answered).

The ONNX file is the model's artifact ``onnx`` (``artifacts/<file>.onnx`` among the version's files,
where ``detops evaluate/profile/predict models:/...`` find it); its ``metadata_props`` carry the
preprocessing and class names the runner reads, copied into the MLmodel's ``metadata.detops`` for
readers who do not open the graph. Decoding, preprocessing, inference and post-processing are the
runners' and :mod:`detops.deploy.service`'s, so the detections equal ``detops predict``'s.

The model is logged as code (MLflow's "models from code", :mod:`detops.registry.detector_model`), not
pickled: the process that loads it runs that file, which imports ``detops`` from its environment
(``--env-manager local``); nothing in the model names a path of the machine that logged it.
This module imports MLflow and pandas at import time; import it only where a model is built or loaded.
"""

from __future__ import annotations

import base64
import importlib.metadata
import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from detops.deploy.service import DEFAULT_SCORE, ROW_FIELDS, detect_entries
from detops.errors import DetopsError

IMAGE_COLUMN = "image"
ARTIFACT_KEY = "onnx"
BACKENDS: tuple[str, ...] = ("ort", "openvino")
DEFAULT_BACKEND = "ort"

# What the model imports when it runs (torch: DAMO-YOLO's post-processing of a plain graph). detops
# itself is not listed: it is installed from its repository, so the model is served from an
# environment that has it (``--env-manager local``).
_REQUIREMENTS: tuple[str, ...] = (
    "mlflow",
    "numpy",
    "pandas",
    "onnx",
    "onnxruntime",
    "openvino",
    "opencv-python-headless",
    "torch",
)


def signature() -> ModelSignature:
    """Input ``image`` (string: base64 of an encoded image), output columns of
    :data:`detops.deploy.service.ROW_FIELDS`, params ``score`` (double) and ``backend`` (string)."""
    return ModelSignature(
        inputs=Schema([ColSpec("string", IMAGE_COLUMN)]),
        outputs=Schema(
            [
                ColSpec(Array(Array("double")), "boxes"),
                ColSpec(Array("double"), "scores"),
                ColSpec(Array("string"), "labels"),
                ColSpec(Array("long"), "category_ids"),
                ColSpec("string", "error", required=False),
            ]
        ),
        params=ParamSchema(
            [ParamSpec("score", "double", DEFAULT_SCORE), ParamSpec("backend", "string", DEFAULT_BACKEND)]
        ),
    )


def encode_image(data: bytes) -> str:
    """The base64 text of an encoded image, as the ``image`` column carries it over HTTP."""
    return base64.b64encode(data).decode("ascii")


def requirements() -> list[str]:
    """``name==version`` of each package the model imports, as installed here."""
    out = []
    for name in _REQUIREMENTS:
        try:
            # without a local label (torch's "+cpu"), which no package index serves
            out.append(f"{name}=={importlib.metadata.version(name).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def model_kwargs(onnx_path: str | os.PathLike[str], *, example_image: bytes) -> dict[str, Any]:
    """The arguments of ``mlflow.pyfunc.log_model`` / ``save_model`` for the detector of ``onnx_path``:
    model, artifact, signature, input example (``example_image``: one small encoded image, base64 in
    the example, with the default params), requirements and the artifact's metadata."""
    from detops.deploy.artifact import read_onnx_metadata

    meta = read_onnx_metadata(onnx_path)
    example = pd.DataFrame({IMAGE_COLUMN: [encode_image(example_image)]})
    return {
        # models from code: the file that builds the model, not a pickled object
        "python_model": str(Path(__file__).with_name("detector_model.py")),
        "artifacts": {ARTIFACT_KEY: str(Path(onnx_path))},
        "signature": signature(),
        "input_example": (example, {"score": DEFAULT_SCORE}),
        "pip_requirements": requirements(),
        "metadata": {"detops": meta.to_dict()},
    }


def _bad_param(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class DetectorModel(PythonModel):
    """Encoded images in, detections on the original images out (see the module docstring).

    The ONNX Runtime runner is made when the model loads; OpenVINO's on the first request that asks for
    it. One image runs at a time per loaded model: each runtime already spreads one image over every
    core, and OpenVINO's infer request must not be shared between threads.
    """

    def load_context(self, context: Any) -> None:
        """Load the bundled ONNX file on ONNX Runtime."""
        self._path = Path(context.artifacts[ARTIFACT_KEY])
        self._lock = threading.Lock()
        self._runners: dict[str, Any] = {}
        self._runner(DEFAULT_BACKEND)

    def _runner(self, backend: str) -> Any:
        from detops.deploy.runners.base import load_runner

        if backend not in self._runners:
            self._runners[backend] = load_runner(self._path, backend=backend)
        return self._runners[backend]

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """One row of detections per row of ``model_input`` (column ``image``); ``params``: ``score``
        (0..1) and ``backend`` (``ort`` or ``openvino``). A bad parameter fails the request; a bad
        image only its row."""
        params = params or {}
        score = params.get("score", DEFAULT_SCORE)
        backend = params.get("backend", DEFAULT_BACKEND)
        if score is None or not 0.0 <= float(score) <= 1.0:
            raise _bad_param(f"param 'score' must be within 0..1, got {score!r}")
        if backend not in BACKENDS:
            raise _bad_param(f"param 'backend' must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if isinstance(model_input, pd.DataFrame):
            if IMAGE_COLUMN not in model_input.columns:
                raise _bad_param(f"input needs a column {IMAGE_COLUMN!r}, got {list(model_input.columns)}")
            entries = model_input[IMAGE_COLUMN].tolist()
        else:  # a list of entries, or one entry, when called without a signature
            entries = list(model_input) if isinstance(model_input, list | tuple) else [model_input]
        with self._lock:
            try:
                runner = self._runner(backend)
            except DetopsError as exc:
                raise _bad_param(f"param 'backend': {exc}") from None
            rows = detect_entries(runner, entries, score=float(score))
        # object columns: lists stay lists and a missing error stays None (JSON null), not NaN
        return pd.DataFrame({k: pd.Series([r[k] for r in rows], dtype=object) for k in ROW_FIELDS})
