"""Second pass: which stretches of an input its text did not cover, and how the new text is
merged back. Batched decoders have no "seek and continue": after an early end-of-text, or
when a whole utterance is skipped, the speech would otherwise be silently dropped."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from .chunks import SpeechChunk
from .engines.base import EngineOutput, LocalText
from .lines import UTTERANCE_PAUSE
from .transcript import is_cjk

MIN_UNITS_PER_SECOND = 0.6   # words (or CJK characters) per second of speech; people say 2–5
MIN_SPEECH_SECONDS = 4.0     # shorter inputs are too short to judge
MID_SPAN_REST = 1.0          # seconds of a span left after the text: more is speech not yet written
MAX_RERUNS = 3               # passes after the first: a decoder may stop early again on the rest


@dataclass(frozen=True)
class Redo:
    """One stretch of input `index` (local seconds) to run again."""

    index: int
    start: float
    end: float
    replaces: bool  # True: the new text replaces the first answer; False: it is added


def plan(chunks: Sequence[SpeechChunk], outputs: Sequence[EngineOutput | None], retry_tail: float) -> list[Redo]:
    """Inputs whose text cannot cover their speech get a second pass.

    - The text is far too sparse for the speech (a batched decoder sometimes skips whole
      utterances): every utterance is run on its own and replaces the first answer. An input
      of one utterance would only be run again unchanged: it gets the tail rule instead.
    - The text stops more than `retry_tail` seconds early: the rest is run again (see
      `resume_point`).
    """
    redo: list[Redo] = []
    for i, (chunk, out) in enumerate(zip(chunks, outputs)):
        if out is None or not chunk.spans or chunk.speech_seconds < MIN_SPEECH_SECONDS:
            continue
        sparse = text_units(out) < MIN_UNITS_PER_SECOND * chunk.speech_seconds
        utterances = chunk.utterances(UTTERANCE_PAUSE) if sparse else []
        if len(utterances) > 1:
            redo.extend(Redo(i, lo, hi, True) for lo, hi in utterances)
        else:
            redo.extend(tail(i, chunk, out, retry_tail))
    return redo


def follow_up(redo: Sequence[Redo], slices: Sequence[SpeechChunk], outputs: Sequence[EngineOutput | None],
              retry_tail: float) -> list[Redo]:
    """After a pass over `slices` (the stretches `redo` named): the ones whose new text again
    stops early get the rest run once more, in the original input's time."""
    again = []
    for r, piece, out in zip(redo, slices, outputs):
        again.extend(Redo(r.index, r.start + t.start, r.start + t.end, False)
                     for t in tail(r.index, piece, out, retry_tail))
    return again


def tail(index: int, chunk: SpeechChunk, out: EngineOutput | None, retry_tail: float) -> list[Redo]:
    """The rest of `chunk` after its text stopped more than `retry_tail` s early (none if not)."""
    end = text_end(out)
    if end is None or chunk.seconds - end <= retry_tail or not chunk.spans:
        return []
    return [Redo(index, resume_point(chunk, end), chunk.seconds, False)]


def cleared(outputs: list[EngineOutput | None], redo: Sequence[Redo]) -> None:
    """Drop the first answers that the second pass replaces (in place)."""
    for i in {r.index for r in redo if r.replaces}:
        outputs[i] = replace(outputs[i], pieces=())


def merged(first: EngineOutput, again: EngineOutput, shift: float) -> EngineOutput:
    """The first output plus the second pass's pieces (shifted to the input's time), in order."""
    pieces = first.pieces + tuple(_shifted(p, shift) for p in again.pieces)
    return replace(first, pieces=tuple(sorted(pieces, key=lambda p: p.start)))


def text_units(output: EngineOutput) -> int:
    text = " ".join(p.text for p in output.pieces)
    return sum(1 for ch in text if is_cjk(ch)) + len([w for w in text.split() if not is_cjk(w[0])])


def text_end(output: EngineOutput | None) -> float | None:
    """Where the recognised text stops (local seconds); None when there is nothing to judge."""
    if output is None or not output.pieces:
        return None
    last = output.pieces[-1]
    return last.words[-1].end if last.words else last.end


def resume_point(chunk: SpeechChunk, text_end: float) -> float:
    """Where to run again from: right where the text stopped when that is inside a stretch of
    speech with more than a second of it left (a decoder stopped mid-speech), else the next
    speech onset (what is left of the span is the last word's tail)."""
    for offset, span in zip(chunk.offsets, chunk.spans):
        span_end = offset + span.end - span.start
        if offset <= text_end < span_end - MID_SPAN_REST:
            return text_end
        if offset >= text_end - 0.05:
            return offset
    return text_end


def _shifted(piece: LocalText, shift: float) -> LocalText:
    words = tuple(replace(w, start=w.start + shift, end=w.end + shift) for w in piece.words)
    return replace(piece, start=piece.start + shift, end=piece.end + shift, words=words)
