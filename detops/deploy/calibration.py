"""Calibration inputs for low-precision builds: N images of a dataset split through the artifact's own
preprocessing, as graph feeds (input name -> array with a leading batch axis of 1).

Shared by ONNX Runtime static quantization (``detops.deploy.quantize``) and TensorRT INT8 calibration
(``detops.deploy.tensorrt``), so both see exactly the tensors the deployed runners produce.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from detops.deploy.artifact import ArtifactMeta
from detops.deploy.preprocess import preprocess
from detops.deploy.runners.ort import graph_feed
from detops.errors import DetopsError


def calibration_samples(
    data_root: str | os.PathLike[str],
    *,
    meta: ArtifactMeta,
    input_names: Sequence[str],
    n: int,
    split: str = "val",
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """``n`` images of ``split`` (a seeded random subset; all when ``n`` >= the split's size) as graph
    feeds for an artifact with ``meta`` and graph inputs ``input_names``."""
    from detops.data.dataset import CocoDetection

    if n < 1:
        raise DetopsError(f"--calib-images must be at least 1, got {n}")
    dataset = CocoDetection.from_root(data_root, split=split, transform=None)
    if len(dataset) == 0:
        raise DetopsError(f"{data_root}: split {split!r} has no images to calibrate with")
    order = np.random.default_rng(seed).permutation(len(dataset))[: min(n, len(dataset))]
    samples = []
    for index in sorted(int(i) for i in order):
        image = dataset[index]["image"]
        array, sizes = preprocess([image], size=meta.input_size, pixel_scale=meta.pixel_scale)
        samples.append(graph_feed(meta, array, sizes, list(input_names)))
    return samples
