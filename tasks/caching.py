"""Cache keys: dataset version + resolved config + code version, so an unchanged rerun is a hit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def run_key(*, dataset_md5: str, config: dict[str, Any], code: str) -> str:
    """A stable hex key of a training run: the dataset version, the resolved (JSON-able) config and
    the code version. Any change to one of them gives another key (and so another run directory)."""
    blob = json.dumps({"data": dataset_md5, "config": config, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def code_digest(*packages: str | Path) -> str:
    """SHA-256 over the relative paths and bytes of every ``*.py`` file under ``packages`` (the code
    that training runs), so a commit touching only docs or tests keeps the cache, and an uncommitted
    edit of the code does not."""
    h = hashlib.sha256()
    for package in packages:
        base = Path(package)
        for path in sorted(base.rglob("*.py")):
            h.update(f"{base.name}/{path.relative_to(base).as_posix()}\0".encode())
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def train_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Prefect ``cache_key_fn`` of the training task: its plan's ``key`` (see ``run_key``)."""
    return f"train-{parameters['plan']['key']}"


def home_instance(home: str | Path) -> str:
    """The id of this home directory's life: a random hex string kept in ``<home>/instance-id``,
    created on first use. Prefect keeps its cache outside the home, so after ``make clean`` (a new
    home at the same path) the keys must change, or a cached summary would name deleted files."""
    from detops.fileio import atomic_open

    path = Path(home) / "instance-id"
    if not path.is_file():
        import uuid

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as fh:
            fh.write(uuid.uuid4().hex + "\n")
    return path.read_text().strip()


def register_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Prefect ``cache_key_fn`` of registration: the training key and the MLflow run of the run being
    registered, so a rerun of unchanged training reuses the version already registered instead of
    adding one, and a training run again (into a new MLflow run) is registered again."""
    run = parameters["run"]
    return f"register-{run['key']}-{run.get('run_id')}"
