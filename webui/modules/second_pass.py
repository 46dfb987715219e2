"""Second pass: which stretches of an input its text did not cover, and how the new text is
merged back. Batched decoders have no "seek and continue": after an early end-of-text, or
when a whole utterance is skipped, the speech would otherwise be silently dropped."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from .chunks import SpeechChunk
from .engines.base import EngineOutput, LocalText
from .lines import UTTERANCE_PAUSE
from .transcript import STRETCHED_WORD_SECONDS, UNWRITTEN_SECONDS, is_cjk, spoken_seconds

MIN_SPEECH_SECONDS = 4.0     # shorter inputs are too short to judge
MID_SPAN_REST = 1.0          # seconds of a span left after the text: more is speech not yet written
# A sparse input's utterances run again two at a time (one at a time when it holds only two:
# together they would be the same input again). In pairs, 20 minutes of Mandarin clips took 44
# inputs at 22.6 % CER against 51 at 23.7 % one at a time; three at a time lost a point.
UTTERANCES_PER_REDO = 2
MAX_RERUNS = 3               # passes after the first: a decoder may stop early again on the rest


@dataclass(frozen=True)
class Redo:
    """One stretch of input `index` (local seconds) to run again."""

    index: int
    start: float
    end: float
    replaces: bool  # True: the new text replaces the first answer; False: it is added
    # The new text is added only when it accounts for the stretch's speech (`keeps`): a stretch
    # the first text passed over may be noise or music under the VAD, not words skipped.
    checked: bool = False


def plan(chunks: Sequence[SpeechChunk], outputs: Sequence[EngineOutput | None], retry_tail: float) -> list[Redo]:
    """Inputs whose text cannot cover their speech get a second pass.

    - The text is far too sparse for the speech, or a word is stretched over seconds of it (a
      batched decoder sometimes skips whole utterances): its utterances run again, two at a
      time, and replace the first answer. An input of one utterance would only be run again
      unchanged: it gets the tail rule instead. Text that is whole up to where it stopped
      early stays, and only the utterances after it run again (`written_until`).
    - The text stops more than `retry_tail` seconds early: the rest is run again (see
      `resume_point`).
    """
    redo: list[Redo] = []
    for i, (chunk, out) in enumerate(zip(chunks, outputs)):
        if out is None or not chunk.spans or chunk.speech_seconds < MIN_SPEECH_SECONDS:
            continue
        stretched = longest_word(out) > STRETCHED_WORD_SECONDS
        sparse = stretched or too_sparse(out, chunk.speech_seconds)
        utterances = chunk.utterances(UTTERANCE_PAUSE) if sparse else []
        written = written_until(chunk, out, retry_tail) if sparse and not stretched else None
        if written is not None:
            rest = [(max(lo, written), hi) for lo, hi in utterances if hi > written]
            redo.extend(Redo(i, lo, hi, False) for lo, hi in grouped(rest, UTTERANCES_PER_REDO))
        elif len(utterances) > 1:
            size = UTTERANCES_PER_REDO if len(utterances) > UTTERANCES_PER_REDO else 1
            redo.extend(Redo(i, lo, hi, True) for lo, hi in grouped(utterances, size))
        else:
            redo.extend(skipped(i, chunk, out) + tail(i, chunk, out, retry_tail))
    return redo


def skipped(index: int, chunk: SpeechChunk, out: EngineOutput) -> list[Redo]:
    """Stretches where the text skipped speech: before its first word, or between two words, lie
    more than UNWRITTEN_SECONDS of the input's speech. Each runs again alone, its text added (a
    batched decoder sometimes writes only an input's last utterance: 22 s of a meeting's speech
    before a well-formed last sentence, too many words for the text to count as sparse). The
    stretch ends where the next word starts, so no word is written twice."""
    words = [w for p in out.pieces for w in p.words]
    redo = []
    for before, after in zip([0.0] + [w.end for w in words], words):
        if chunk.slice(before, after.start).speech_seconds > UNWRITTEN_SECONDS:
            redo.append(Redo(index, resume_point(chunk, before) if before else 0.0, after.start, False, True))
    return redo


def keeps(redo: Redo, piece: SpeechChunk, out: EngineOutput) -> bool:
    """Whether the text of a stretch run again goes into the input's text. A `checked` stretch's
    text must account for its speech (not too sparse) and pass Whisper's own marks: over a 3-s
    stretch of a music bed, Whisper wrote a lone "off." or "here."."""
    return not redo.checked or (bool(out.pieces) and not too_sparse(out, piece.speech_seconds)
                                and not failed(out))


def failed(out: EngineOutput) -> bool:
    """Some piece came from a decode Whisper's own marks call failed (`Scores.failed`)."""
    return any(p.scores is not None and p.scores.failed() for p in out.pieces)


def written_until(chunk: SpeechChunk, out: EngineOutput, retry_tail: float) -> float | None:
    """Where to go on from (local seconds) when a sparse input's text (no word stretched: the
    caller checks) is whole up to where it stopped: the decoder wrote the first utterances and
    ended early (Spanish telephone prompts: one utterance written of three, then end-of-text).
    Only the rest needs running again, and the text written stays. None when the text is thin
    throughout, or holds Chinese characters (whatever the language label: it is the alignment of
    such text that hides skipped utterances under the words around them; a Mandarin dialogue
    lost a point of CER this way), or came from a decode Whisper's own marks call failed (a line
    made up over music, then end-of-text: `Scores.failed`)."""
    end = text_end(out)
    if end is None or chunk.seconds - end <= retry_tail:
        return None
    if failed(out) \
            or any(is_cjk(ch) for p in out.pieces for ch in p.text) \
            or too_sparse(out, chunk.slice(0.0, end).speech_seconds):
        return None
    return resume_point(chunk, end)


def grouped(utterances: Sequence[tuple[float, float]], size: int) -> list[tuple[float, float]]:
    """Runs of `size` neighbouring utterances, as (start of the first, end of the last)."""
    return [(utterances[k][0], utterances[min(k + size, len(utterances)) - 1][1])
            for k in range(0, len(utterances), size)]


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


def too_sparse(output: EngineOutput, speech_seconds: float) -> bool:
    """Too little text for the speech: each word accounts for at most 1/MIN_WORDS_PER_SECOND
    seconds of it, each Chinese character for 1/MIN_CJK_PER_SECOND (mixed text counts both)."""
    return spoken_seconds(" ".join(p.text for p in output.pieces)) < speech_seconds


def longest_word(output: EngineOutput) -> float:
    return max((w.end - w.start for p in output.pieces for w in p.words), default=0.0)


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
