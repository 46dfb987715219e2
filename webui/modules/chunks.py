"""SpeechChunk: a model input made of speech spans, with the map back to recording time;
`make_chunk` builds one per segment and `pack` joins neighbours up to the engine's maximum.

The engine sees the segment's speech with long pauses shortened; `SpeechChunk.to_absolute`
turns any time in that shortened audio back into recording time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Iterable, Iterator, Sequence

import numpy as np

from .audio import SAMPLE_RATE
from .transcript import Segment
from .vads import SpeechSpan, VadOptions, speech_spans


@dataclass(frozen=True)
class SpeechChunk:
    """The engine input for one segment plus the piecewise map back to absolute time."""

    segment: Segment                  # the stretch of recording it covers
    audio: np.ndarray                 # speech with pauses shortened, 16 kHz float32
    spans: tuple[SpeechSpan, ...]     # absolute speech spans, in order
    offsets: tuple[float, ...]        # where each span starts inside `audio` (seconds)
    covers: int = 1                   # how many planned segments were packed into it

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
        i = max(0, bisect.bisect_right(self.offsets, local) - 1)
        span = self.spans[i]
        inside = local - self.offsets[i]
        if inside > span.end - span.start and edge == "start" and i + 1 < len(self.spans):
            return self.spans[i + 1].start
        return min(span.start + max(0.0, inside), span.end)

    def pieces(self) -> list["SpeechChunk"]:
        """One chunk per speech span, each covering no planned segment yet (covers=0)."""
        return list(self._pieces)

    @cached_property
    def _pieces(self) -> tuple["SpeechChunk", ...]:
        # Made once: the window plan packs the same chunks many times (window_plan.py), and each
        # piece keeps its own inner pauses (quiet_middles).
        out = []
        for span, offset in zip(self.spans, self.offsets):
            lo = int(round(offset * SAMPLE_RATE))
            hi = lo + int(round((span.end - span.start) * SAMPLE_RATE))
            out.append(SpeechChunk(Segment(self.segment.index, span.start, span.end), self.audio[lo:hi], (span,), (0.0,), 0))
        return tuple(out)

    @cached_property
    def quiet_middles(self) -> np.ndarray:
        """The middle (local seconds) of every SPLIT_PAUSE-long stretch whose level stays
        SPLIT_BELOW_DB under the chunk's speech (its 90th percentile frame): where
        `split_at_pause` may cut. Worked out once per chunk."""
        hop = int(_FRAME * SAMPLE_RATE)
        frames = self.audio[: self.audio.size - self.audio.size % hop].reshape(-1, hop)
        width = int(round(SPLIT_PAUSE / _FRAME))
        if frames.shape[0] < max(1, width):
            return np.zeros(0)
        level = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)
        windows = np.lib.stride_tricks.sliding_window_view(level, width).max(axis=1)  # loudest frame of each window
        quiet = windows <= np.percentile(level, 90) - SPLIT_BELOW_DB
        return ((np.arange(windows.size) + width / 2) * _FRAME)[quiet]

    def slice(self, lo: float, hi: float | None = None) -> "SpeechChunk":
        """The part of this chunk between local times `lo` and `hi` (its time 0 is `lo` here)."""
        hi = self.seconds if hi is None else hi
        spans, offsets = [], []
        for span, offset in zip(self.spans, self.offsets):
            length = span.end - span.start
            if offset + length <= lo or offset >= hi:
                continue
            skipped = max(0.0, lo - offset)
            kept = min(length, hi - offset)
            spans.append(SpeechSpan(round(span.start + skipped, 3), round(span.start + kept, 3)))
            offsets.append(max(0.0, offset - lo))
        audio = self.audio[int(round(lo * SAMPLE_RATE)):int(round(hi * SAMPLE_RATE))]
        return SpeechChunk(self.segment, audio, tuple(spans), tuple(offsets), self.covers)

    def utterances(self, min_pause: float) -> list[tuple[float, float]]:
        """Local (start, end) of each stretch of speech between pauses of at least `min_pause`."""
        bounds: dict[int, tuple[float, float]] = {}
        for uid, span, offset in zip(self.utterance_ids(min_pause), self.spans, self.offsets):
            end = offset + span.end - span.start
            bounds[uid] = (bounds[uid][0], end) if uid in bounds else (offset, end)
        return [bounds[k] for k in sorted(bounds)]

    def by_utterance(self, min_pause: float) -> list["SpeechChunk"]:
        """One chunk per utterance (speech between pauses of at least `min_pause`); the planned
        segment goes with the last one."""
        parts = [self.slice(lo, hi) for lo, hi in self.utterances(min_pause)]
        if not parts:
            return [self]
        return [replace(p, covers=self.covers if i == len(parts) - 1 else 0) for i, p in enumerate(parts)]

    def span_starts(self) -> tuple[float, ...]:
        return tuple(s.start for s in self.spans)


def make_chunk(segment: Segment, audio: np.ndarray, opts: VadOptions = VadOptions(),
               spans: Sequence[SpeechSpan] | None = None) -> SpeechChunk:
    """Cut the segment's speech out and join it with pauses shortened to `keep_gap`; `spans`:
    its speech spans where they are known already (`make_chunks`), else its own VAD's."""
    spans = speech_spans(audio, segment.start, opts) if spans is None else list(spans)
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


def make_chunks(segments: Sequence[Segment], audios: Iterable[np.ndarray], opts: VadOptions = VadOptions()
                ) -> list[SpeechChunk]:
    """`make_chunk` for consecutive segments (`audios`: their samples in turn), their VADs
    agreeing at each cut (`agree_at_cuts`). A segment's chunk is made once its right neighbour
    is heard: two segments' samples are held at a time, not a window's."""
    chunks: list[SpeechChunk] = []
    waiting: tuple[Segment, np.ndarray, list[SpeechSpan]] | None = None  # heard, its right side not yet
    for segment, audio in zip(segments, audios):
        spans = speech_spans(audio, segment.start, opts)
        if waiting is not None:
            left, left_audio, left_spans = waiting
            left_spans, spans = _agreed(left, segment, left_spans, spans)
            chunks.append(make_chunk(left, left_audio, opts, left_spans))
        waiting = segment, audio, spans
    if waiting is not None:
        chunks.append(make_chunk(*waiting[:2], opts, waiting[2]))
    return chunks


# Seconds: speech that stops this close before a cut the other side speaks at runs on to it.
# Speech that starts after such a cut is run back to it only from closer: the first word of a
# span is timed from the span's start, so a line would start up to that much early (1.5 s
# there put a line 0.5 s before its speech over a music bed).
EDGE_BRIDGE = 1.5
ONSET_BRIDGE = 0.4


def agree_at_cuts(segments: Sequence[Segment], spans: Sequence[Sequence[SpeechSpan]]) -> list[list[SpeechSpan]]:
    """Each segment's speech spans, where at a cut one side has speech right at the cut and the
    other side's stops within EDGE_BRIDGE of it (or starts within ONSET_BRIDGE): that side's
    span then runs to the cut. Each segment's VAD judges by its own loudest frame, and over a
    music bed the plan cuts inside speech: soft words at the cut passed one side's threshold
    and not the other's, and what lay between the span and the cut reached no input (a
    60-minute recording lost "of times" and "the" at two such cuts). A cut in a pause has
    speech at neither side and stays."""
    spans = [list(s) for s in spans]
    for k in range(len(segments) - 1):
        spans[k], spans[k + 1] = _agreed(segments[k], segments[k + 1], spans[k], spans[k + 1])
    return spans


def _agreed(a: Segment, b: Segment, a_spans: list[SpeechSpan], b_spans: list[SpeechSpan]
            ) -> tuple[list[SpeechSpan], list[SpeechSpan]]:
    """The spans of two neighbouring segments, agreed at the cut between them (`agree_at_cuts`)."""
    if abs(a.end - b.start) > 1e-6 or not a_spans or not b_spans:
        return a_spans, b_spans
    last, first = a_spans[-1], b_spans[0]
    a_speaks, b_speaks = last.end >= a.end - 1e-3, first.start <= b.start + 1e-3
    if b_speaks and not a_speaks and a.end - last.end <= EDGE_BRIDGE:
        return a_spans[:-1] + [SpeechSpan(last.start, a.end)], b_spans
    if a_speaks and not b_speaks and first.start - b.start <= ONSET_BRIDGE:
        return a_spans, [SpeechSpan(b.start, first.end)] + b_spans[1:]
    return a_spans, b_spans


def pack(chunks: list[SpeechChunk], max_seconds: float, gap_seconds: float) -> list[SpeechChunk]:
    """`pack_with_gap` at `gap_seconds`, or at a shorter gap (GAP_SHRINK) where that saves a whole
    input: the pauses between utterances are shortened further only when the speech otherwise
    spills a few seconds into one more 30-s input (0.6 s pauses: 2.6 s left over after eight
    full inputs in a five-minute window of telephone prompts; 31 inputs for 18.7 minutes of
    them, 29 with the shorter gaps where they save one). The plans are made on views of the
    audio; only the one kept is joined."""
    return _materialise(*_best_plan(chunks, max_seconds, gap_seconds))


GAP_SHRINK = (0.5, 1 / 3)  # shorter gaps tried (fractions of keep_gap: 0.3 s, 0.2 s by default)

PlanItem = SpeechChunk | list[SpeechChunk]  # a silent chunk passed through, or the pieces of one input
Plan = tuple[list[PlanItem], float]  # the items in order, and the gap their pieces are joined with


def _best_plan(chunks: list[SpeechChunk], max_seconds: float, gap_seconds: float) -> Plan:
    best = _plan(chunks, max_seconds, gap_seconds)
    for factor in GAP_SHRINK:
        trial = _plan(chunks, max_seconds, gap_seconds * factor)
        if _inputs(trial[0]) < _inputs(best[0]):
            best = trial
    return best


def _inputs(items: list[PlanItem]) -> int:
    return sum(1 for item in items if isinstance(item, list))


def _materialise(items: list[PlanItem], gap_seconds: float) -> list[SpeechChunk]:
    return [_joined(item, gap_seconds) if isinstance(item, list) else item for item in items]


def pack_with_gap(chunks: list[SpeechChunk], max_seconds: float, gap_seconds: float) -> list[SpeechChunk]:
    """Repack the speech of neighbouring segments into inputs of up to `max_seconds`, cutting
    only between speech spans (at pauses), or inside a span at a pause within it.

    Whisper pads every input to 30 s, so an input's cost is fixed whatever it holds: the fewer
    inputs, the faster. Packing spans cuts the encoder passes by a third on conversational audio;
    a span that does not fit whole is cut at its latest inner pause that fits (`split_at_pause`),
    so an input is not closed seconds short because the next sentence is long (on telephone
    prompts with 0.6-3 s gaps: 31 inputs instead of 34 for 18.7 minutes). The time map keeps
    every span's absolute time. Silent chunks pass through alone (they are skipped, never sent
    to a model); a chunk's `covers` goes with the input holding its end.

    Where the cut plan had to cut inside speech (no silence to cut at), the two sides are
    joined back without a gap, and an input never ends at such a cut when the speech before it
    can move to the next input: a decoder drops the word cut in two at an input's edge.
    """
    return _materialise(*_plan(chunks, max_seconds, gap_seconds))


def _plan(chunks: list[SpeechChunk], max_seconds: float, gap_seconds: float) -> Plan:
    """pack_with_gap's inputs as lists of pieces (views of the chunks' audio), not yet joined."""
    packed: list[PlanItem] = []
    group: list[SpeechChunk] = []
    for group in _filling(chunks, max_seconds, gap_seconds, packed):
        pass
    if group:
        packed.append(group)
    return packed, gap_seconds


def _filling(chunks: list[SpeechChunk], max_seconds: float, gap_seconds: float,
             packed: list[PlanItem]) -> Iterator[list[SpeechChunk]]:
    """The fill behind `_plan`, a chunk at a time: closed inputs go to `packed`, and after each
    chunk it yields the input still open. It never looks ahead, so what it holds after chunk k
    is the plan of chunks[:k + 1] (`input_counts`)."""
    group: list[SpeechChunk] = []  # the pieces of the input being filled, in order
    for chunk in chunks:
        if not chunk.spans:
            packed.append(chunk)
            yield group
            continue
        for piece in chunk.pieces():
            while group and _length(group + [piece], gap_seconds) > max_seconds:
                room = max_seconds - _length(group, gap_seconds) - (0.0 if _contiguous(group[-1], piece) else gap_seconds)
                head, rest = split_at_pause(piece, room)
                if head is not None:
                    packed.append(group + [head])
                    group, piece = [], rest
                    break
                carried: list[SpeechChunk] = []
                if len(group) > 1 and _contiguous(group[-1], piece) and \
                        _length([group[-1], piece], gap_seconds) <= max_seconds:
                    carried = [group.pop()]
                packed.append(group)
                group = carried
            group.append(piece)
        group[-1] = replace(group[-1], covers=group[-1].covers + chunk.covers)
        yield group


def input_counts(chunks: list[SpeechChunk], max_seconds: float, gap_seconds: float) -> list[int]:
    """For each k, how many inputs `pack` makes of chunks[:k + 1], without joining any audio:
    one pass per gap tried (`_filling` has no look-ahead), the fewest kept, as `pack` keeps."""
    counts: list[int] | None = None
    for gap in (gap_seconds, *(gap_seconds * factor for factor in GAP_SHRINK)):
        packed: list[PlanItem] = []
        these = [_inputs(packed) + bool(group) for group in _filling(chunks, max_seconds, gap, packed)]
        counts = these if counts is None else [min(a, b) for a, b in zip(counts, these)]
    return counts or []


SPLIT_MIN_PART = 1.0     # seconds: neither side of a split at an inner pause is shorter
SPLIT_PAUSE = 0.15       # seconds: the shortest inner pause a span is split at ...
SPLIT_BELOW_DB = 20.0    # ... at least this far below the span's speech level (its 90th percentile frame)
_FRAME = 0.01            # level frames (s)


def split_at_pause(piece: SpeechChunk, room: float) -> tuple[SpeechChunk | None, SpeechChunk]:
    """A one-span piece cut in two at its latest inner pause that leaves a first part of at most
    `room` seconds: (first, rest), the two contiguous (no gap is put between them, nothing is
    lost); (None, piece) when it has no such pause. A pause is SPLIT_PAUSE seconds whose level
    stays SPLIT_BELOW_DB under the span's speech, not a soft consonant; the cut is its middle."""
    if len(piece.spans) != 1 or room < SPLIT_MIN_PART or piece.seconds < 2 * SPLIT_MIN_PART:
        return None, piece
    middles = piece.quiet_middles
    ok = middles[(middles >= SPLIT_MIN_PART) & (middles <= min(room, piece.seconds - SPLIT_MIN_PART))]
    if not ok.size:
        return None, piece
    cut = round(float(ok[-1]), 2)
    span = piece.spans[0]
    at = int(round(cut * SAMPLE_RATE))
    middle = round(span.start + at / SAMPLE_RATE, 3)
    first = SpeechChunk(Segment(piece.segment.index, span.start, middle), piece.audio[:at],
                        (SpeechSpan(span.start, middle),), (0.0,), 0)
    rest = SpeechChunk(Segment(piece.segment.index, middle, span.end), piece.audio[at:],
                       (SpeechSpan(middle, span.end),), (0.0,), piece.covers)
    return first, rest


def _contiguous(a: SpeechChunk, b: SpeechChunk) -> bool:
    """b's speech starts where a's stops: a cut made inside speech, not a pause."""
    return abs(b.spans[0].start - a.spans[-1].end) < 0.002


def _length(pieces: list[SpeechChunk], gap_seconds: float) -> float:
    gaps = sum(0.0 if _contiguous(a, b) else gap_seconds for a, b in zip(pieces, pieces[1:]))
    return sum(p.seconds for p in pieces) + gaps


def _joined(pieces: list[SpeechChunk], gap_seconds: float) -> SpeechChunk:
    out = pieces[0]
    for piece in pieces[1:]:
        out = _join(out, piece, 0.0 if _contiguous(out, piece) else gap_seconds)
    return out


def _join(a: SpeechChunk, b: SpeechChunk, gap_seconds: float) -> SpeechChunk:
    gap = np.zeros(int(gap_seconds * SAMPLE_RATE), dtype=np.float32)
    shift = (a.audio.size + gap.size) / SAMPLE_RATE
    return SpeechChunk(
        segment=Segment(a.segment.index, a.segment.start, max(a.segment.end, b.segment.end)),
        audio=np.concatenate([a.audio, gap, b.audio]),
        spans=a.spans + b.spans,
        offsets=a.offsets + tuple(o + shift for o in b.offsets),
        covers=a.covers + b.covers,
    )
