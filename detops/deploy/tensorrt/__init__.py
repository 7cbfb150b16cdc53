"""TensorRT 10 engines: build from ONNX (``build``), INT8 entropy calibration (``calibrator``) and the
JSON stamp that ties an engine to its GPU and TensorRT version (``stamp``).

Nothing here imports ``tensorrt`` at module level: the package is an optional extra
(``pip install 'detops[trt]'`` on a machine with an NVIDIA GPU) and CPU-only installs must import
``detops.deploy`` cleanly.
"""
