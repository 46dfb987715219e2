"""Fast CPU VAD inside a segment (librosa), keeping the map back to absolute time.

The engine sees the segment's speech with long pauses shortened; `SpeechChunk.to_absolute`
turns any time in that shortened audio back into recording time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import librosa
import numpy as np

from .audio import SAMPLE_RATE
from .transcript import Segment


@dataclass(frozen=True)
class VadOptions:
    top_db: float = 25.0
    frame_length: int = 2048
    hop_length: int = 512
    min_speech: float = 0.15      # shorter bursts are clicks, not words
    keep_gap: float = 0.3         # pauses are shortened to this much silence
    pad: float = 0.1              # context kept around each speech span
    floor_db: float = -55.0       # a segment quieter than this (dBFS peak) has no speech


@dataclass(frozen=True)
class SpeechSpan:
    start: float  # absolute seconds
    end: float


@dataclass(frozen=True)
class SpeechChunk:
    """The engine input for one segment plus the piecewise map back to absolute time."""

    segment: Segment
    audio: np.ndarray                 # speech with pauses shortened, 16 kHz float32
    spans: tuple[SpeechSpan, ...]     # absolute speech spans, in order
    offsets: tuple[float, ...]        # where each span starts inside `audio` (seconds)

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE

    @property
    def speech_seconds(self) -> float:
        return sum(s.end - s.start for s in self.spans)

    def to_absolute(self, local: float) -> float:
        """Map a time in `audio` to recording time; times inside a shortened pause snap to its ends."""
        if not self.spans:
            return self.segment.start
        i = max(0, bisect.bisect_right(self.offsets, local) - 1)
        span = self.spans[i]
        return min(span.start + max(0.0, local - self.offsets[i]), span.end)

    def span_starts(self) -> tuple[float, ...]:
        return tuple(s.start for s in self.spans)


def speech_spans(audio: np.ndarray, offset: float, opts: VadOptions = VadOptions()) -> list[SpeechSpan]:
    """Absolute speech spans of `audio`, which starts at `offset` seconds in the recording."""
    if audio.size == 0:
        return []
    peak = float(np.max(np.abs(audio)))
    if peak <= 0 or 20 * np.log10(peak) < opts.floor_db:
        return []
    intervals = librosa.effects.split(audio, top_db=opts.top_db, frame_length=opts.frame_length, hop_length=opts.hop_length)
    total = audio.size / SAMPLE_RATE
    spans: list[SpeechSpan] = []
    for lo, hi in intervals:
        start = max(0.0, lo / SAMPLE_RATE - opts.pad)
        end = min(total, hi / SAMPLE_RATE + opts.pad)
        if hi - lo < opts.min_speech * SAMPLE_RATE:
            continue
        if spans and start - (spans[-1].end - offset) <= opts.keep_gap:
            spans[-1] = SpeechSpan(spans[-1].start, round(offset + end, 3))
        else:
            spans.append(SpeechSpan(round(offset + start, 3), round(offset + end, 3)))
    return spans


def make_chunk(segment: Segment, audio: np.ndarray, opts: VadOptions = VadOptions()) -> SpeechChunk:
    """Cut the segment's speech out and join it with pauses shortened to `keep_gap`."""
    spans = speech_spans(audio, segment.start, opts)
    gap = np.zeros(int(opts.keep_gap * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    offsets: list[float] = []
    cursor = 0
    for i, span in enumerate(spans):
        if i:
            parts.append(gap)
            cursor += gap.size
        lo = int(round((span.start - segment.start) * SAMPLE_RATE))
        hi = int(round((span.end - segment.start) * SAMPLE_RATE))
        piece = audio[lo:hi]
        offsets.append(cursor / SAMPLE_RATE)
        parts.append(piece)
        cursor += piece.size
    joined = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, dtype=np.float32)
    return SpeechChunk(segment, joined, tuple(spans), tuple(offsets))
