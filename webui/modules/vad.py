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
    min_speech: float = 0.25      # shorter bursts are clicks and breaths, not words
    keep_gap: float = 1.0         # longer pauses are shortened to this (room for the model's timing)
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

    def span_index(self, local: float) -> int:
        """Which span a time in `audio` belongs to; a time in a shortened pause goes with the
        speech after it (a word timed into a pause is the next utterance's first word)."""
        i = max(0, bisect.bisect_right(self.offsets, local) - 1)
        in_pause = local - self.offsets[i] > self.spans[i].end - self.spans[i].start if self.spans else False
        return i + 1 if in_pause and i + 1 < len(self.spans) else i

    def utterance_ids(self, min_pause: float) -> tuple[int, ...]:
        """Number the spans so that spans closer than `min_pause` share an utterance."""
        ids, current = [], 0
        for i, span in enumerate(self.spans):
            if i and span.start - self.spans[i - 1].end >= min_pause:
                current += 1
            ids.append(current)
        return tuple(ids)

    def to_absolute(self, local: float, edge: str = "start") -> float:
        """Map a time in `audio` to recording time.

        A time inside a shortened pause is ambiguous: as the start of text it means the next
        span's onset, as the end of text the previous span's end.
        """
        if not self.spans:
            return self.segment.start
        i = self.span_index(local)
        span = self.spans[i]
        inside = local - self.offsets[i]
        if inside > span.end - span.start and edge == "start" and i + 1 < len(self.spans):
            return self.spans[i + 1].start
        return min(span.start + max(0.0, inside), span.end)

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
