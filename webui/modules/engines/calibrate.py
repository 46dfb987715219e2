"""The memory cost model every engine can use: measured once at load, it turns the GPU memory
free right now into how many inputs of a given padded length fit in the next batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import gpu
from .base import SAMPLE_RATE

SHORT_SECONDS = 4.0


@dataclass(frozen=True)
class BatchCost:
    """GPU bytes a batch needs: shared once, plus per item (fixed + per padded second)."""

    bytes_per_second: float
    fixed_bytes_per_item: float
    shared_bytes: float

    def batch_size(self, padded_seconds: float, free_bytes: int, margin: float) -> int:
        free = max(0, free_bytes - int(self.shared_bytes))
        return batch_size_for(padded_seconds, self.bytes_per_second, self.fixed_bytes_per_item, free, margin)


def batch_size_for(padded_seconds: float, bytes_per_second: float, fixed_bytes_per_item: float,
                   free_bytes: int, margin: float) -> int:
    """Items of `padded_seconds` that fit in (1 - margin) of free memory; never below 1.

    1 even when one item looks too big: the estimate is conservative and the OOM backoff
    turns a real failure into a clear error.
    """
    if padded_seconds < 0 or bytes_per_second < 0 or fixed_bytes_per_item < 0:
        raise ValueError("batch cost figures must not be negative")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    per_item = padded_seconds * bytes_per_second + fixed_bytes_per_item
    if per_item <= 0:
        raise ValueError("the cost model gives zero bytes per item")
    budget = max(0.0, free_bytes * (1.0 - margin))
    return max(1, int(budget // per_item))


def measure(run: Callable[[list[np.ndarray]], object], max_seconds: float) -> BatchCost:
    """Peak memory for 1 and 2 items at a short and at the longest length, through `run`
    (one engine batch call)."""
    def signal(seconds: float) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.normal(0, 0.05, int(seconds * SAMPLE_RATE)).astype(np.float32)

    short, long = signal(SHORT_SECONDS), signal(max_seconds)
    run([short])  # first call: cuBLAS workspaces, compiled graphs
    run([short, short])

    def per_item(x: np.ndarray) -> tuple[float, float]:
        gpu.cleanup_after_batch()
        _, one = gpu.peak_allocated_during(lambda: run([x]))
        gpu.cleanup_after_batch()
        _, two = gpu.peak_allocated_during(lambda: run([x, x]))
        return max(float(two - one), 1.0), float(one)

    cost_short, one_short = per_item(short)
    cost_long, _ = per_item(long)
    per_second = max(0.0, (cost_long - cost_short) / (max_seconds - SHORT_SECONDS))
    fixed = max(0.0, cost_short - per_second * SHORT_SECONDS)
    gpu.cleanup_after_batch()
    return BatchCost(per_second, fixed, max(0.0, one_short - cost_short))
