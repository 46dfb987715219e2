"""The recording decoded once: the silence scan's 16 kHz int16 samples kept in an unlinked
temporary file (nothing is left behind, even after a kill), read back window by window. Memory
holds one window; the file costs 115 MB per hour of audio on disk."""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, Iterator

import numpy as np

from .audio import SAMPLE_RATE, to_float

_BYTES = 2  # int16


class Spool:
    def __init__(self, folder: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="longform-pcm-", dir=folder)
        self.samples = 0

    def keep(self, block: np.ndarray) -> None:
        """Append decoded int16 samples (the scan calls this for every block)."""
        self._file.write(np.ascontiguousarray(block, dtype="<i2").data)  # no copy: the buffer itself
        self.samples += block.size

    def fileno(self) -> int:
        return self._file.fileno()

    def written(self) -> None:
        """ffmpeg appended samples through the descriptor (audio.scan_silences): count them."""
        self._file.seek(0, os.SEEK_END)
        self.samples = self._file.tell() // _BYTES

    def read(self, start: float, end: float) -> np.ndarray:
        """Float32 samples of [start, end) seconds; what lies past the end is simply absent."""
        first = min(self.samples, max(0, int(round(start * SAMPLE_RATE))))
        last = min(self.samples, max(first, int(round(end * SAMPLE_RATE))))
        self._file.flush()
        raw = os.pread(self._file.fileno(), (last - first) * _BYTES, first * _BYTES)
        return to_float(np.frombuffer(raw, dtype="<i2"))

    def ranges(self, ranges: Iterable[tuple[float, float]]) -> Iterator[np.ndarray]:
        for start, end in ranges:
            yield self.read(start, end)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
