"""The small interface through which metrics leave the engine (MLflow and the CLI plug in here).

A callback is any object with some of these methods; missing ones are skipped. The engine never
imports a tracking library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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


class TimeLimit:
    """Fails a training that runs past ``seconds`` of wall time, checked after every optimizer step.

    A timeout that works wherever the loop runs (a worker thread included, where a signal-based one
    cannot interrupt): the last epoch's checkpoint stays, so a retry resumes from it."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = float(seconds)
        self._clock = clock
        self._start: float | None = None

    def on_train_start(self, *, config: dict[str, Any], run_dir: str) -> None:
        self._start = self._clock()

    def on_step_end(self, *, step: int, epoch: int, metrics: dict[str, float]) -> None:
        if self._start is None:
            self._start = self._clock()
        elapsed = self._clock() - self._start
        if elapsed > self.seconds:
            from detops.errors import DetopsError

            raise DetopsError(
                f"training stopped at epoch {epoch + 1}, step {step}: over its time limit of "
                f"{self.seconds:.0f} s ({elapsed:.0f} s)",
                exit_code=1,
            )
