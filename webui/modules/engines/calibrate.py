"""Batch sizing every engine uses: a memory cost model measured once at load, the memory free
right now (inside the VRAM cap), and a ceiling learned from out-of-memory errors that lasts for
the process and relaxes slowly after successes. `MemoryBudget` puts the three together."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np

from .. import gpu
from .base import SAMPLE_RATE

log = logging.getLogger(__name__)

SHORT_SECONDS = 4.0
MIN_BYTES_PER_ITEM = 16 * 2**20  # a floor: a measured cost of ~0 would allow unbounded batches
T = TypeVar("T")
R = TypeVar("R")


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
    fixed = max(MIN_BYTES_PER_ITEM, cost_short - per_second * SHORT_SECONDS)
    gpu.cleanup_after_batch()
    return BatchCost(per_second, fixed, max(0.0, one_short - cost_short))


def measure_or_fallback(run: Callable[[list[np.ndarray]], object], max_seconds: float,
                        total_bytes: int) -> BatchCost:
    """`measure`, protected: if calibration itself runs out of memory (a busy card), a
    conservative cost (1/32 of the card per item) stands in and the learned cap does the rest."""
    try:
        return measure(run, max_seconds)
    except Exception as exc:
        if not gpu.is_oom(exc):
            raise
    gpu.cleanup_after_batch()
    log.warning("calibration ran out of GPU memory; using a conservative batch cost")
    return BatchCost(0.0, max(MIN_BYTES_PER_ITEM, total_bytes / 32), 0.0)


class LearnedCap:
    """What out-of-memory errors taught, kept for the rest of the process: each one makes
    batches a quarter smaller than the one that failed (the back-off itself retries with half,
    to get going again at once). After `relax_after` batches in a row succeed at the limit it
    gives back an eighth, so a co-tenant that leaves, or a one-off spike, returns the room.

    With a cost model the lesson is `factor` on the bytes per item, so batches still follow the
    memory free (they grow back when a co-tenant leaves); without one it is `ceiling`."""

    def __init__(self, relax_after: int = 6) -> None:
        self.factor = 1.0
        self.ceiling: int | None = None
        self.relax_after = relax_after
        self._successes = 0
        self._lock = threading.Lock()

    def lowered(self, attempted: int) -> None:
        with self._lock:
            self.factor = min(64.0, self.factor * 4 / 3)
            self.ceiling = max(1, min((3 * attempted) // 4, self.ceiling or attempted))
            self._successes = 0

    def succeeded(self, size: int, limit: int) -> None:
        """A batch of `size` ran; `limit` is what the budget allowed for it."""
        with self._lock:
            if self.ceiling is None or size < limit:
                return
            self._successes += 1
            if self._successes >= self.relax_after:
                self.factor = max(1.0, self.factor * 8 / 9)
                self.ceiling += max(1, self.ceiling // 8)
                self._successes = 0


class MemoryBudget:
    """How many inputs the next batch may hold, and running a batch so an out-of-memory error
    costs nothing: the batch is split (no input lost) and the learned cap remembers it.

    `probe.free_bytes()` already stays inside the VRAM cap (see gpu.py); without a cost model
    (the CPU) the batch size is `cpu_cap`."""

    def __init__(self, cost: BatchCost | None, probe: gpu.MemoryProbe | None) -> None:
        self.cost, self.probe = cost, probe
        self.cap = LearnedCap()
        self._limit = 1

    def batch_limit(self, padded_seconds: float, margin: float, cpu_cap: int) -> int:
        if self.cost is None or self.probe is None:
            self._limit = max(1, min(cpu_cap, self.cap.ceiling or cpu_cap))
        else:
            factor = self.cap.factor
            free = max(0, self.probe.free_bytes() - int(self.cost.shared_bytes))
            self._limit = batch_size_for(padded_seconds, self.cost.bytes_per_second * factor,
                                         self.cost.fixed_bytes_per_item * factor, free, margin)
        return self._limit

    def run(self, fn: Callable[[list[T]], list[R]], items: Sequence[T]) -> list[R]:
        outputs = gpu.run_with_oom_backoff(fn, items, on_oom=lambda event: self.cap.lowered(event.attempted))
        self.cap.succeeded(len(items), self._limit)
        return outputs
