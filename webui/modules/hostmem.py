"""Host memory: one glibc heap that keeps its pages between batches, trimmed after each batch.

CTranslate2 runs a model on its own worker thread, so by default glibc serves its buffers from
a per-thread arena whose heaps are at most 64 MB: every larger buffer (Whisper's encoder
attention is hundreds of MB) is a fresh mmap, zeroed page by page by the kernel on first touch
and unmapped again when freed. On 2 cores that was 6 million page faults and 15 s of system
time in a 35 s run of 18 minutes of speech. With one arena and no mmap threshold the same
buffers are reused from the heap (scripts/bench/vs_faster_whisper.py, README)."""

from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8


def _load_libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only; musl and macOS lack it
        libc.mallopt  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


_libc = _load_libc()


def tune_host_allocator() -> bool:
    """One arena and large buffers from the heap. Must run before a second thread allocates
    (glibc fixes its arena limit then), so `webui/__init__.py` calls it first thing. An
    allocator set from outside (MALLOC_ARENA_MAX or GLIBC_TUNABLES in the environment, or
    WEBUI_MALLOC=default) is left alone. True when the settings were taken."""
    if _libc is None or os.environ.get("WEBUI_MALLOC") == "default":
        return False
    if "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    taken = [_libc.mallopt(_M_ARENA_MAX, 1),
             _libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30),  # no mmap below 1 GiB: reuse, not refault
             _libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30),
             _libc.mallopt(_M_TOP_PAD, 64 << 20)]
    return all(taken)


def trim_host_heap() -> None:
    """Hand freed heap pages back to the OS after every batch: the peak RSS stays that of one
    batch instead of creeping up with the number of batches, i.e. with the recording's length."""
    if _libc is not None:
        _libc.malloc_trim(0)
