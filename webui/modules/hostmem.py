"""Host memory: hand freed heap back to the OS after every batch (glibc's malloc_trim)."""

from __future__ import annotations

import ctypes


def _load_libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only; musl and macOS lack it
        return libc
    except (OSError, AttributeError):
        return None


_libc = _load_libc()


def trim_host_heap() -> None:
    """Without it glibc keeps each batch's large, short-lived buffers (Whisper's encoder
    attention: ~0.7 GB at batch 8) fragmented and the peak RSS creeps up with the number of
    batches, i.e. with the recording's length."""
    if _libc is not None:
        _libc.malloc_trim(0)
