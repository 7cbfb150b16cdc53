"""Test probe for ``test_torchrun_train.py``: put this directory on ``PYTHONPATH`` and set
``DETOPS_PROBE_DIR``; every torchrun worker (``RANK`` set) then records, without changing what it
computes:

- ``saves.jsonl``: one line ``{"rank", "path"}`` per checkpoint the engine writes (``save_checkpoint``
  for ``last.pt``, ``atomic_copy`` of it for ``best.pt``);
- ``val.jsonl``: one line ``{"rank", "indices"}`` per pass over a validation shard;
- ``state_r{rank}_e{epoch}.pt``: the rank's model and EMA weights after each epoch's evaluation.

Python imports ``sitecustomize`` at start-up; the launcher process (no ``RANK``) is left alone.
"""

from __future__ import annotations

import json
import os

if os.environ.get("DETOPS_PROBE_DIR") and "RANK" in os.environ:
    from pathlib import Path

    import torch

    from detops.data import loader as _loader
    from detops.engine import fit as _fit

    _DIR = Path(os.environ["DETOPS_PROBE_DIR"])
    _RANK = int(os.environ["RANK"])

    def _log(name: str, record: dict) -> None:
        with open(_DIR / name, "a") as fh:
            fh.write(json.dumps({"rank": _RANK, **record}) + "\n")

    _save = _fit.save_checkpoint

    def _probe_save(path, payload):  # type: ignore[no-untyped-def]
        _log("saves.jsonl", {"path": str(path)})
        return _save(path, payload)

    _fit.save_checkpoint = _probe_save

    _copy = _fit.atomic_copy  # best.pt is a copy of the last.pt just written

    def _probe_copy(src, dst):  # type: ignore[no-untyped-def]
        _log("saves.jsonl", {"path": str(dst)})
        return _copy(src, dst)

    _fit.atomic_copy = _probe_copy

    _shard_iter = _loader.ShardSampler.__iter__

    def _probe_shard_iter(self):  # type: ignore[no-untyped-def]
        _log("val.jsonl", {"indices": list(self.indices)})
        return _shard_iter(self)

    _loader.ShardSampler.__iter__ = _probe_shard_iter  # type: ignore[method-assign]

    _record = _fit._evaluate_and_record

    def _probe_record(config, run, data, parts, *, epoch, **kwargs):  # type: ignore[no-untyped-def]
        out = _record(config, run, data, parts, epoch=epoch, **kwargs)
        state = {
            "model": {k: v.detach().cpu().clone() for k, v in parts.model.state_dict().items()},
            "ema": parts.ema.state_dict()["module"] if parts.ema is not None else None,
        }
        torch.save(state, _DIR / f"state_r{_RANK}_e{epoch + 1}.pt")
        return out

    _fit._evaluate_and_record = _probe_record
