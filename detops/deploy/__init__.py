"""Deployment: artifacts that know their classes, one runner interface for every backend, and the
evaluation, profiling and prediction built on runners.

    >>> from detops.deploy import load_runner
    >>> runner = load_runner("best.onnx", backend="ort")
    >>> dets = runner([image_rgb_uint8])  # one Detections per image, original pixels

``artifact`` says what a file is and what it carries (``ArtifactMeta``); ``runners`` hold one class per
backend behind the ``Runner`` Protocol; ``evaluate``, ``profile`` and ``predict`` take a runner and
never ask which backend it is.
"""

from __future__ import annotations

from detops.deploy.artifact import ArtifactMeta, artifact_kind, resolve_artifact, resolve_source
from detops.deploy.runners.base import RUNNERS, Detections, Runner, load_runner

__all__ = [
    "RUNNERS",
    "ArtifactMeta",
    "Detections",
    "Runner",
    "artifact_kind",
    "load_runner",
    "resolve_artifact",
    "resolve_source",
]
