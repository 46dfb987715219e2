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
MAX_FACTOR = 64.0
# Cost multiplier under a VRAM cap no allocator enforces (CTranslate2 has none): an underestimate
# there is never refused, and a calibration on silence decodes shorter than speech does.
UNENFORCED_CAP_SAFETY = 1.5
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


def measure(run: Callable[[list[np.ndarray]], object], max_seconds: float, device: str | None = None) -> BatchCost:
    """Peak memory for 1 and 2 items at a short and at the longest length, through `run`
    (one engine batch call) on `device` (default: wherever torch holds memory)."""
    def signal(seconds: float) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.normal(0, 0.05, int(seconds * SAMPLE_RATE)).astype(np.float32)

    short, long = signal(SHORT_SECONDS), signal(max_seconds)

    def per_item(x: np.ndarray) -> tuple[float, float]:
        gpu.cleanup_after_batch(device)
        _, one = gpu.peak_allocated_during(lambda: run([x]), device)
        gpu.cleanup_after_batch(device)
        _, two = gpu.peak_allocated_during(lambda: run([x, x]), device)
        return max(float(two - one), 1.0), float(one)

    with gpu.measuring():  # a deep cleanup meanwhile leaves the peak counters alone
        run([short])  # first call: cuBLAS workspaces, compiled graphs
        run([short, short])
        cost_short, one_short = per_item(short)
        cost_long, _ = per_item(long)
    per_second = max(0.0, (cost_long - cost_short) / (max_seconds - SHORT_SECONDS))
    fixed = max(MIN_BYTES_PER_ITEM, cost_short - per_second * SHORT_SECONDS)
    gpu.cleanup_after_batch(device)
    return BatchCost(per_second, fixed, max(0.0, one_short - cost_short))


def measure_or_fallback(run: Callable[[list[np.ndarray]], object], max_seconds: float,
                        total_bytes: int, device: str | None = None) -> BatchCost:
    """`measure`, protected: if calibration itself runs out of memory (a busy card), a
    conservative cost (1/32 of the card per item) stands in and the learned cap does the rest."""
    try:
        return measure(run, max_seconds, device)
    except Exception as exc:
        if not gpu.is_oom(exc):
            raise
    gpu.cleanup_after_batch(device)
    log.warning("calibration ran out of GPU memory; using a conservative batch cost")
    return BatchCost(0.0, max(MIN_BYTES_PER_ITEM, total_bytes / 32), 0.0)


class LearnedCap:
    """What out-of-memory errors taught, kept for the rest of the process: each one makes
    batches at least a quarter smaller than the one that failed, and the cost at least what the
    failure proves (the back-off itself retries with half, to get going again at once). After
    `relax_after` batches in a row succeed at the limit it gives back an eighth, so a co-tenant
    that leaves, or a one-off spike, returns the room.

    With a cost model the lesson is `factor` on the bytes per item, so batches still follow the
    memory free (they grow back when a co-tenant leaves); without one it is `ceiling`."""

    def __init__(self, relax_after: int = 6) -> None:
        self.factor = 1.0
        self.ceiling: int | None = None
        self.relax_after = relax_after
        self._successes = 0
        self._lock = threading.Lock()

    def lowered(self, attempted: int, proven: float = 0.0) -> None:
        """A batch of `attempted` ran out of memory (or over the cap); the cost factor is
        `proven` at least."""
        with self._lock:
            self.factor = min(MAX_FACTOR, max(self.factor * 4 / 3, proven))
            self.ceiling = max(1, min((3 * attempted) // 4, self.ceiling or attempted))
            self._successes = 0

    def raised(self, factor: float) -> None:
        with self._lock:
            self.factor = min(MAX_FACTOR, max(self.factor, factor))

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


@dataclass(frozen=True)
class Plan:
    """What batch_limit sized a batch with: the limit, the free bytes (shared cost taken off),
    the cost model's bytes per input at that length (before the learned factor) and the margin."""

    limit: int
    free: int = 0
    per_item: float = 0.0
    margin: float = 0.0

    def factor_for(self, items: int, share: float = 1.0) -> float:
        """The learned factor under which `items` inputs take `share` of the free memory."""
        return share * self.free / (items * self.per_item) if items > 0 and self.per_item > 0 else 0.0


class MemoryBudget:
    """How many inputs the next batch may hold, and running a batch so an out-of-memory error
    costs nothing: the batch is split (no input lost) and the learned cap remembers it.

    `probe.free_bytes()` already stays inside the VRAM cap (see gpu.py); without a cost model
    (the CPU) the batch size is `cpu_cap`. `watch`: a cap no allocator enforces (CTranslate2's),
    checked against each batch's measured peak."""

    def __init__(self, cost: BatchCost | None, probe: gpu.MemoryProbe | None,
                 watch: gpu.CapWatch | None = None) -> None:
        self.cost, self.probe, self.watch = cost, probe, watch
        self.cap = LearnedCap()
        self._plan = Plan(1)

    def batch_limit(self, padded_seconds: float, margin: float, cpu_cap: int) -> int:
        if self.cost is None or self.probe is None:
            self._plan = Plan(max(1, min(cpu_cap, self.cap.ceiling or cpu_cap)))
            return self._plan.limit
        # Past a cap nothing enforces, an underestimate runs unrefused: room to spare there.
        safety = UNENFORCED_CAP_SAFETY if self.watch else 1.0
        per_item = safety * (padded_seconds * self.cost.bytes_per_second + self.cost.fixed_bytes_per_item)
        free = max(0, self.probe.free_bytes() - int(self.cost.shared_bytes))
        factor = self.cap.factor * safety
        limit = batch_size_for(padded_seconds, self.cost.bytes_per_second * factor,
                               self.cost.fixed_bytes_per_item * factor, free, margin)
        self._plan = Plan(limit, free, per_item, margin)
        return limit

    def run(self, fn: Callable[[list[T]], list[R]], items: Sequence[T]) -> list[R]:
        plan, lessons = self._plan, []

        def on_oom(event: gpu.OomEvent) -> None:
            lessons.append(event)
            # The failed size did not fit in the memory it was planned in: that much is proven.
            self.cap.lowered(event.attempted, plan.factor_for(event.attempted))

        outputs = gpu.run_with_oom_backoff(self._watched(fn, plan, lessons), items, on_oom=on_oom)
        ooms = [e for e in lessons if isinstance(e, gpu.OomEvent)]
        if len(ooms) > 1:
            # Halved more than once: the cost model is off twofold or more. Size from what ran.
            self.cap.raised(plan.factor_for(ooms[-1].retry_with, 1.0 - plan.margin))
        if not lessons:  # a batch that hit an out-of-memory error (or the cap) is no success
            self.cap.succeeded(len(items), plan.limit)
        return outputs

    def _watched(self, fn: Callable[[list[T]], list[R]], plan: Plan, lessons: list) -> Callable[[list[T]], list[R]]:
        watch = self.watch
        if watch is None or self.cost is None:
            return fn

        def run(chunk: list[T]) -> list[R]:
            outputs, peak = watch.peak_during(lambda: fn(chunk))
            if peak.peak > watch.limit_bytes:  # it ran, but over the cap: a lesson like an OOM
                measured = max(0.0, peak.rise - self.cost.shared_bytes) / len(chunk)
                log.warning("a batch of %d held %.2f GB, over the %.2f GB VRAM cap; batches shrink",
                            len(chunk), peak.peak / 1e9, watch.limit_bytes / 1e9)
                lessons.append(peak)
                self.cap.lowered(len(chunk), measured / plan.per_item if plan.per_item else 0.0)
            return outputs
        return run
