"""Group engine inputs into batches: longest first, sized by the engine's memory estimate."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

# limit(padded_seconds) -> how many inputs of that padded length may share the next batch
BatchLimit = Callable[[float], int]


def iter_batches(durations: Sequence[float], limit: BatchLimit) -> Iterator[list[int]]:
    """Yield groups of indices into `durations`, longest first.

    Sorting by length keeps padding small; the longest input of a batch sets its padded
    length. The generator asks `limit` lazily, right before each batch is handed out, so a
    GPU engine sizes every batch from the memory free at that moment.
    """
    order = sorted(range(len(durations)), key=lambda i: (-durations[i], i))
    pos = 0
    while pos < len(order):
        cap = max(1, int(limit(durations[order[pos]])))
        yield order[pos:pos + cap]
        pos += cap
