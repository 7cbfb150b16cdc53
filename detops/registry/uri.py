"""Registry URIs as artifact names: ``models:/detops-<variant>@<alias>`` and ``models:/detops-<variant>/<N>``.

``parse_model_uri`` is pure. ``resolve_model_uri`` asks the registry which version is meant and
returns a local file: the ONNX file among the version's model files (the pyfunc detector's artifact,
see :mod:`detops.registry.pyfunc`; downloaded once into ``<home>/registry-cache/<model>/<version>/``;
versions are immutable, aliases are re-read every time),
or with ``want="checkpoint"`` the best checkpoint of the version's training run (its run directory
when it is on this machine, else the run's ``checkpoints/best.pt`` artifact).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detops.errors import DetopsError

SCHEME = "models:/"
_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9_.\-]+)(?:@(?P<alias>[A-Za-z0-9_\-]+)|/(?P<version>[0-9]+))$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed registry URI: model ``name`` and either ``alias`` or ``version``."""

    name: str
    alias: str | None = None
    version: int | None = None


def is_model_uri(text: str) -> bool:
    """Whether ``text`` uses the ``models:/`` scheme (valid or not)."""
    return str(text).startswith(SCHEME) or str(text).startswith("models:")


def parse_model_uri(text: str) -> ModelRef:
    """``models:/NAME@ALIAS`` or ``models:/NAME/N`` as a ``ModelRef``; ``DetopsError`` otherwise."""
    match = _URI.match(str(text))
    if not match:
        raise DetopsError(
            f"registry URI {text!r}: expected models:/detops-<variant>@<alias> or models:/detops-<variant>/<N>"
        )
    version = match.group("version")
    return ModelRef(
        name=match.group("name"),
        alias=match.group("alias"),
        version=int(version) if version is not None else None,
    )


def version_of(ref: ModelRef, client: Any, text: str) -> int:
    """The version number ``ref`` names on ``client``'s registry; one-line ``DetopsError`` naming ``text``
    when the model, the alias or the version does not exist."""
    if not client.model_exists(ref.name):
        raise DetopsError(f"{text}: no registered model {ref.name!r}")
    if ref.version is not None:
        client.get_version(ref.name, ref.version)  # raises a one-line error when missing
        return ref.version
    assert ref.alias is not None
    version = client.alias_version(ref.name, ref.alias)
    if version is None:
        raise DetopsError(f"{text}: model {ref.name!r} has no alias {ref.alias!r}")
    return int(version)


def resolve_model_uri(text: str, *, want: str = "onnx", settings: Any = None) -> Path:
    """The local file a registry URI names (see the module docstring); ``want`` is ``"onnx"`` or
    ``"checkpoint"``. Raises a one-line ``DetopsError`` for a bad URI, model, alias or version."""
    from detops.registry.client import open_registry
    from detops.settings import get_settings

    ref = parse_model_uri(text)
    settings = settings or get_settings()
    with open_registry(settings) as client:
        version = version_of(ref, client, text)
        if want == "checkpoint":
            return _checkpoint(client, ref.name, version, Path(settings.home), text)
        cache = Path(settings.home) / "registry-cache" / ref.name / str(version)
        found = sorted(cache.rglob("*.onnx")) if cache.is_dir() else []
        if not found:
            staging = cache.with_name(f".{version}.partial")
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            client.download_version(ref.name, version, staging)
            shutil.rmtree(cache, ignore_errors=True)
            staging.rename(cache)  # whole directory appears at once
            found = sorted(cache.rglob("*.onnx"))
        if not found:
            raise DetopsError(f"{text}: version {version} of {ref.name!r} holds no ONNX file")
        return found[0]


def _checkpoint(client: Any, name: str, version: int, home: Path, text: str) -> Path:
    from detops.registry import tags as T

    v = client.get_version(name, version)
    run_dir = v.tags.get(T.RUN_DIR)
    if run_dir and (Path(run_dir) / "best.pt").is_file():
        return Path(run_dir) / "best.pt"
    run_id = v.tags.get(T.RUN_ID) or v.run_id
    if not run_id:
        raise DetopsError(f"{text}: version {version} records no training run to take a checkpoint from")
    target = home / "registry-cache" / name / f"{version}-checkpoint"
    path = target / "checkpoints" / "best.pt"
    if not path.is_file():
        try:
            client.download_run_artifact(run_id, "checkpoints/best.pt", target)
        except Exception as exc:
            raise DetopsError(
                f"{text}: run {run_id} has no checkpoints/best.pt artifact ({type(exc).__name__})"
            ) from None
    return path
