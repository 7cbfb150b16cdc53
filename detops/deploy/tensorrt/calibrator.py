"""INT8 entropy calibration for TensorRT: a pure feed of host batches, wrapped in an
``IInt8EntropyCalibrator2`` only when TensorRT is there.

``CalibrationFeed`` does the work TensorRT asks of a calibrator (batch size, the next batch's device
pointers by input name, the calibration cache file) without importing TensorRT; the device step is a
callable (``to_device``: host array -> object with ``data_ptr()``), CUDA tensors by default, so the
feed can be exercised on a CPU. ``entropy_calibrator(feed)`` returns the TensorRT subclass that
delegates to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detops.errors import DetopsError
from detops.fileio import atomic_open

Batch = Mapping[str, np.ndarray]


def cuda_tensor(array: np.ndarray) -> Any:
    """Copy a host array to the current CUDA device as a torch tensor (keeps ``data_ptr()`` valid
    while referenced)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).to("cuda")


def batched(samples: Iterable[Batch], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Stack per-image inputs (each with a leading batch axis of 1) into batches of ``batch_size``.

    TensorRT's calibrator must hand out full batches, so a short last batch is completed with the
    first images again (every image is seen at least once, none is dropped).
    """
    if batch_size < 1:
        raise DetopsError(f"calibration batch size must be >= 1, got {batch_size}")
    items = list(samples)
    if not items:
        return
    n_batches = -(-len(items) // batch_size)
    for b in range(n_batches):
        chunk = [items[(b * batch_size + i) % len(items)] for i in range(batch_size)]
        yield {name: np.concatenate([c[name] for c in chunk], axis=0) for name in chunk[0]}


class CalibrationFeed:
    """Hands TensorRT one batch at a time and keeps its device copies alive until the next call.

    Args:
        batches: host batches, each a mapping input name -> array with leading axis ``batch_size``.
        batch_size: what ``get_batch_size`` reports; every batch must have it.
        cache_file: calibration cache (read if present, so a rebuild skips calibration; written after).
        to_device: host array -> device object with ``data_ptr()`` (``cuda_tensor`` by default).
    """

    def __init__(
        self,
        batches: Iterable[Batch],
        *,
        batch_size: int,
        cache_file: str | Path | None,
        to_device: Callable[[np.ndarray], Any] = cuda_tensor,
    ) -> None:
        self.batch_size = int(batch_size)
        self.cache_file = None if cache_file is None else Path(cache_file)
        self.batches_fed = 0
        self._batches = iter(batches)
        self._to_device = to_device
        self._alive: list[Any] = []

    def next_pointers(self, names: Sequence[str]) -> list[int] | None:
        """Device pointers of the next batch, one per name in ``names`` order; None when exhausted."""
        batch = next(self._batches, None)
        if batch is None:
            self._alive = []
            return None
        missing = [n for n in names if n not in batch]
        if missing:
            raise DetopsError(f"calibration batch has no input(s) {missing}; it has {sorted(batch)}")
        for name in names:
            if batch[name].shape[0] != self.batch_size:
                raise DetopsError(
                    f"calibration input {name}: batch of {batch[name].shape[0]}, expected {self.batch_size}"
                )
        self._alive = [self._to_device(np.ascontiguousarray(batch[name])) for name in names]
        self.batches_fed += 1
        return [int(t.data_ptr()) for t in self._alive]

    def read_cache(self) -> bytes | None:
        """The cache file's bytes, or None (then TensorRT calibrates from the batches)."""
        if self.cache_file is not None and self.cache_file.is_file():
            data = self.cache_file.read_bytes()
            return data or None
        return None

    def write_cache(self, data: bytes) -> None:
        """Save the calibration table TensorRT produced (atomically)."""
        if self.cache_file is None:
            return
        with atomic_open(self.cache_file, "wb") as fh:
            fh.write(bytes(data))


def entropy_calibrator(feed: CalibrationFeed) -> Any:
    """A ``tensorrt.IInt8EntropyCalibrator2`` that delegates to ``feed`` (imports TensorRT)."""
    import tensorrt as trt

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # the pybind base must be initialised explicitly
            self.feed = feed

        def get_batch_size(self) -> int:
            return feed.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            return feed.next_pointers(names)

        def read_calibration_cache(self) -> bytes | None:
            return feed.read_cache()

        def write_calibration_cache(self, cache: Any) -> None:
            feed.write_cache(bytes(cache))

    return _EntropyCalibrator()
