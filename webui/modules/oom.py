"""Out-of-memory errors: recognising them in every runtime's spelling, and running a batch so
that one costs nothing (halve and retry, no input lost). gpu.py re-exports all of it; the
cleanup between tries is gpu.cleanup_after_batch."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from .devices import torch_loaded
from .engines.base import EngineError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# torch's own (OutOfMemoryError aside), CTranslate2's ("CUDA failed with error out of memory"),
# and the libraries' that fail to allocate a workspace or handle under memory pressure.
OOM_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
               "cudaerrormemoryallocation", "cuda_error_out_of_memory")


@dataclass(frozen=True)
class OomEvent:
    attempted: int  # items in the call that ran out of memory
    retry_with: int  # items per call from now on
    error: str


_oom_lock = threading.Lock()
_oom_count = 0


def oom_event_count() -> int:
    """Out-of-memory errors absorbed by run_with_oom_backoff since the process started."""
    return _oom_count


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, EngineError):  # our own "does not fit even alone" must not be retried
        return False
    torch = torch_loaded()  # not imported: no torch error can have been raised
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def run_with_oom_backoff(
    fn: Callable[[list[T]], list[R]],
    items: Sequence[T],
    on_oom: Callable[[OomEvent], None] | None = None,
) -> list[R]:
    """fn(chunk) -> one output per item; on OOM free memory, halve the chunk and retry.

    Outputs come back in input order and no item is dropped. Once a chunk size has failed
    the smaller size is kept for the rest of the items, since the pressure usually persists.
    """
    from .gpu import cleanup_after_batch  # gpu imports this module

    global _oom_count
    outputs: list[R] = []
    chunk = max(1, len(items))
    start = 0
    while start < len(items):
        part = list(items[start:start + chunk])
        error = ""
        try:
            result = fn(part)
        except Exception as exc:
            if not is_oom(exc):
                raise
            if len(part) == 1:
                cleanup_after_batch()
                raise EngineError(
                    "A single input does not fit in GPU memory even on its own "
                    f"({exc}). Use shorter segments, fp16 precision, a smaller model or the CPU."
                ) from exc
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if error:
            # Outside the except block, so the traceback's tensors can actually be freed.
            cleanup_after_batch()
            chunk = max(1, len(part) // 2)
            with _oom_lock:
                _oom_count += 1
            event = OomEvent(attempted=len(part), retry_with=chunk, error=error)
            log.warning("out of memory with %d items; retrying with %d (%s)", event.attempted, chunk, error)
            if on_oom is not None:
                on_oom(event)
            continue
        if len(result) != len(part):
            raise EngineError(f"the model returned {len(result)} results for {len(part)} inputs")
        outputs.extend(result)
        start += len(part)
    return outputs
