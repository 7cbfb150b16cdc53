"""The pyfunc detector as MLflow "models from code": logged as this file (no pickled object, so no
CloudPickle warning at every registration), which the loading process runs to get the model. See
:mod:`detops.registry.pyfunc`."""

import mlflow.models

from detops.registry.pyfunc import DetectorModel

mlflow.models.set_model(DetectorModel())
