"""The JSON stamp written next to every engine, and the check made before an engine is loaded.

A serialized TensorRT engine only runs on the TensorRT version and the GPU architecture it was built
for; loading it elsewhere fails deep inside the runtime or, worse, silently picks slow tactics. The
stamp records both (plus precision, the ONNX file's sha256 and the build time) so that a mismatch is
refused with one line naming what the engine wants and what this machine has.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.fileio import write_json

STAMP_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU an engine is built for or loaded on: its name and CUDA compute capability (major, minor)."""

    name: str
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class EngineStamp:
    """What an engine was built from and for (the fields of ``<engine>.json``)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "7.5" for a T4
    precision: str
    onnx_sha256: str
    build_time: str  # ISO 8601, UTC
    min_batch: int
    opt_batch: int
    max_batch: int
    artifact: dict[str, Any] = field(default_factory=dict)  # the ONNX file's ArtifactMeta, {} if none


def stamp_path(engine: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine)
    return p.with_name(p.name + STAMP_SUFFIX)


def capability_str(cc: tuple[int, int]) -> str:
    """(7, 5) -> "7.5"."""
    return f"{int(cc[0])}.{int(cc[1])}"


def write_stamp(engine: str | Path, stamp: EngineStamp) -> Path:
    """Write ``stamp`` atomically next to ``engine``; returns the stamp's path."""
    path = stamp_path(engine)
    write_json(path, asdict(stamp))
    return path


def read_stamp(engine: str | Path) -> EngineStamp:
    """The stamp next to ``engine``; a missing, unreadable or incomplete stamp is a ``DetopsError``."""
    path = stamp_path(engine)
    if not path.is_file():
        raise DetopsError(f"{engine}: no stamp {path} (build engines with `detops engine build`)")
    try:
        raw: Any = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DetopsError(f"{path}: not a JSON stamp ({exc})") from None
    if not isinstance(raw, dict):
        raise DetopsError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    names = {f.name for f in fields(EngineStamp)}
    missing = sorted(names - raw.keys() - {"artifact"})
    unknown = sorted(raw.keys() - names)
    if missing or unknown:
        what = f"missing field(s) {missing}" if missing else f"unknown field(s) {unknown}"
        raise DetopsError(f"{path}: {what}")
    if raw["precision"] not in PRECISIONS:
        raise DetopsError(f"{path}: field precision is {raw['precision']!r}, expected one of {PRECISIONS}")
    return EngineStamp(**raw)


def check_compatible(stamp: EngineStamp, *, tensorrt_version: str, device: DeviceInfo, source: str) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture (pure: values in).

    The TensorRT major.minor.patch must match (engines are not portable across releases) and the
    compute capability must be equal (TensorRT's default hardware compatibility level). The message
    names the engine's values and this machine's.
    """
    problems = []
    if _release(stamp.tensorrt_version) != _release(tensorrt_version):
        problems.append(f"TensorRT {stamp.tensorrt_version} (this machine has {tensorrt_version})")
    here = capability_str(device.compute_capability)
    if stamp.compute_capability != here:
        problems.append(
            f"compute capability {stamp.compute_capability} on {stamp.gpu_name} "
            f"(this machine has {here} on {device.name})"
        )
    if problems:
        raise DetopsError(f"{source}: engine was built for " + " and ".join(problems) + "; rebuild it here")


def _release(version: str) -> tuple[str, ...]:
    """ "10.3.0.26" -> ("10", "3", "0"): the build number does not change the engine format."""
    return tuple(version.split(".")[:3])
