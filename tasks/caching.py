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


def train_cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """Prefect ``cache_key_fn`` of the training task: its plan's ``key`` (see ``run_key``), or None
    (no cache: train) when the run directory no longer holds the finished run. Prefect keeps its
    cache outside the home directory: after ``make clean`` a cached summary would name checkpoints
    that are gone."""
    plan = parameters["plan"]
    run_dir = Path(plan["run_dir"])
    if not ((run_dir / "best.pt").is_file() and (run_dir / "summary.json").is_file()):
        return None
    return f"train-{plan['key']}"


def register_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Prefect ``cache_key_fn`` of registration: the training key and the MLflow run of the run being
    registered, so a rerun of unchanged training reuses the version already registered instead of
    adding one, and a training run again (into a new MLflow run) is registered again."""
    run = parameters["run"]
    return f"register-{run['key']}-{run.get('run_id')}"
