"""The small interface through which metrics leave the engine (MLflow and the CLI plug in here).

A callback is any object with some of these methods; missing ones are skipped. The engine never
imports a tracking library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class StopTraining(Exception):
    """Raised by a callback's ``on_epoch_end`` to end the run after this epoch (checkpoints of the
    epoch are already written); ``fit`` returns the summary as usual."""


class Callback(Protocol):
    """Hooks called on rank 0 only. All arguments are plain Python values (floats, ints, dicts, str)."""

    def on_train_start(self, *, config: dict[str, Any], run_dir: str) -> None: ...

    def on_step_end(self, *, step: int, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, *, path: str, kind: str, epoch: int) -> None: ...

    def on_train_end(self, *, summary: dict[str, Any]) -> None: ...


def emit(callbacks: Sequence[Any], hook: str, **values: Any) -> None:
    """Call ``hook(**values)`` on every callback that defines it."""
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(**values)


class StepLossRecorder:
    """Keeps every step's metrics in memory (tests, benches)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.epochs: list[dict[str, float]] = []

    def on_step_end(self, *, step: int, epoch: int, metrics: dict[str, float]) -> None:
        self.steps.append({"step": step, "epoch": epoch, **metrics})

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append({"epoch": epoch, **metrics})
