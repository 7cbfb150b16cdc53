"""Argument checks every command runs before doing any work.

Each function raises ``DetopsError`` with one line naming the option and the offending value, so a
bad argument never ends in a traceback from deep inside the engine (a shape error in the model after
data loading, a DataLoader ``ValueError``, torch's "not compiled with CUDA").

    >>> from detops.cli import _validate as check
    >>> check.at_least(0, "--batch-size", 1)
    Traceback (most recent call last):
    ...
    detops.errors.DetopsError: --batch-size must be >= 1, got 0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from detops.errors import DetopsError

if TYPE_CHECKING:
    from models.variants import Variant

DEVICES = ("cpu", "cuda", "auto")


def at_least(value: int, option: str, minimum: int) -> int:
    """``value`` when it is ``>= minimum`` (batch sizes and epochs: 1; worker counts: 0)."""
    if value < minimum:
        raise DetopsError(f"{option} must be >= {minimum}, got {value}")
    return value


def one_of(value: str, option: str, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices``."""
    if value not in choices:
        raise DetopsError(f"{option} must be one of {', '.join(choices)}; got {value!r}")
    return value


def device(value: str, option: str = "--device") -> str:
    """The device ``value`` names on this machine: ``cpu``, ``cuda`` when CUDA is available, and
    ``auto`` resolved to one of them (CUDA when there is one)."""
    one_of(value, option, DEVICES)
    if value == "auto":
        from detops.engine.distributed import resolve_device

        return resolve_device(value)
    if value == "cuda":
        import torch

        if not torch.cuda.is_available():
            why = (
                "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            )
            raise DetopsError(
                f"{option} cuda: CUDA is not available on this machine ({why}); use --device cpu"
            )
    return value


def variant(name: str, option: str = "VARIANT") -> Variant:
    """The variant row called ``name``."""
    import models

    try:
        return models.get_variant(name)
    except ValueError as exc:
        raise DetopsError(f"{option}: {exc}") from None


def input_size(row: Variant, size: int, option: str = "--img-size", *, training: bool = False) -> int:
    """``size`` when ``row`` can take it (``models.check_input_size``); with ``training``, also every
    multi-scale size the family's recipe draws from it (RT-DETRv2 M/L/X go down to 0.75x)."""
    import models

    try:
        models.check_input_size(row, size)
    except ValueError as exc:
        raise DetopsError(f"{option} {size}: {exc}") from None
    if training:
        from detops.engine.recipes import multi_scale_sizes, recipe_for

        if recipe_for(row, epochs=1, iters_per_epoch=1, total_batch=1).multi_scale:
            for scaled in sorted(set(multi_scale_sizes(size))):
                try:
                    models.check_input_size(row, scaled)
                except ValueError as exc:
                    raise DetopsError(
                        f"{option} {size}: {row.name} trains at multi-scale sizes down to {scaled}, and {exc}"
                    ) from None
    return size
