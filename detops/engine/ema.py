"""Exponential moving average of a model's weights, the form both families evaluate and release."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of ``model`` updated as ``ema = d * ema + (1 - d) * model`` after every step.

    ``d = decay * (1 - exp(-updates / ramp))`` so early updates follow the model closely (DAMO-YOLO:
    decay 0.9998, RT-DETRv2: 0.9999, both with ramp 2000). Every floating-point entry of the state
    dict is averaged, BN running statistics included; integer buffers are copied.
    """

    def __init__(self, model: nn.Module, *, decay: float, ramp: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, ramp, updates

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap(model).state_dict()
        for name, value in self.module.state_dict().items():
            new = source[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(new)

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.module.state_dict(),
            "updates": self.updates,
            "decay": self.decay,
            "ramp": self.ramp,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state.get("decay", self.decay))
        self.ramp = float(state.get("ramp", self.ramp))


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP / DataParallel wrapper, or ``model`` itself."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
