"""Per-iteration learning-rate schedules as pure functions, and a small scheduler that applies them.

Each schedule maps the global iteration to a factor of every group's base learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer


@dataclass(frozen=True)
class WarmupCosine:
    """DAMO-YOLO: quadratic warm-up from 0 over ``warmup_iters``, cosine from 1 to ``min_ratio`` until
    ``cosine_end_iter`` (the start of the no-augmentation tail), then constant ``min_ratio``."""

    warmup_iters: int
    cosine_end_iter: int
    min_ratio: float = 0.05

    def __call__(self, it: int) -> float:
        if self.warmup_iters > 0 and it < self.warmup_iters:
            return (it / self.warmup_iters) ** 2
        if it >= self.cosine_end_iter:
            return self.min_ratio
        span = max(1, self.cosine_end_iter - self.warmup_iters)
        progress = (it - self.warmup_iters) / span
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class WarmupConstant:
    """RT-DETRv2: linear warm-up ``(it + 1) / warmup_iters`` then a constant rate (its MultiStep
    milestone lies beyond the schedule)."""

    warmup_iters: int

    def __call__(self, it: int) -> float:
        if self.warmup_iters > 0 and it < self.warmup_iters:
            return min(1.0, (it + 1) / self.warmup_iters)
        return 1.0


class IterScheduler:
    """Sets ``lr = base_lr * schedule(iteration)`` on every param group; call ``step()`` once per
    optimiser step. Each group's base rate is its ``"base_lr"`` entry (written on construction)."""

    def __init__(self, optimizer: Optimizer, schedule: Any, *, iteration: int = 0) -> None:
        self.optimizer, self.schedule, self.iteration = optimizer, schedule, iteration
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self._apply()

    def _apply(self) -> None:
        factor = self.schedule(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self._apply()
