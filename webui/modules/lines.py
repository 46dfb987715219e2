"""Subtitle lines: a model's text split at pauses by its word times, mapped to recording time,
each line's start pulled onto the VAD speech onset it belongs to."""

from __future__ import annotations

from dataclasses import replace

from .chunks import SpeechChunk
from .engines.base import EngineOutput, LocalText, LocalWord
from .transcript import Scores, SegmentResult, TimedText, Word, join_scores, join_texts, tidy_spaces

UTTERANCE_PAUSE = 0.8        # seconds of silence that separate two utterances
# A subtitle line breaks at about that much real silence. Pauses are measured between VAD
# spans, which carry padding and frame smear at each edge (0.1 s pad + ~0.06 s), so a gap of
# 0.6 s between spans is ~0.9 s of silence: a quiet speaker's utterance edges, judged against
# their own level, otherwise narrow a clear sentence pause below the utterance threshold.
LINE_PAUSE = 0.6
MIN_CUE = 0.3                # seconds: a shorter subtitle flashes by unread
SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")


def to_result(chunk: SpeechChunk, output: EngineOutput, snap: float) -> SegmentResult:
    """The chunk's output as lines in recording time, in order, never starting before the
    previous line; a start within `snap` seconds of a speech onset moves onto it."""
    starts = chunk.span_starts()
    pieces = []
    previous_start = chunk.segment.start
    for piece in (p for raw in output.pieces for p in split_at_pauses(raw, chunk)):
        start = chunk.to_absolute(piece.start, "start")
        end = chunk.to_absolute(max(piece.end, piece.start), "end")
        nearest = min(starts, key=lambda s: abs(s - start)) if starts else start
        if abs(nearest - start) <= snap:
            start = nearest  # VAD onsets are sharper than model timestamps
        start = max(start, previous_start)
        words = tuple(Word(round(float(chunk.to_absolute(w.start, "start")), 3),
                           round(float(chunk.to_absolute(max(w.end, w.start), "end")), 3), w.text.strip())
                      for w in piece.words if w.text.strip())
        pieces.append(TimedText(round(float(start), 3), round(float(max(end, start)), 3), tidy_spaces(piece.text),
                                scores=piece.scores, words=words))
        previous_start = start
    return SegmentResult(chunk.segment, tuple(pieces), round(float(chunk.speech_seconds), 3),
                         output.language, output.itn_applied)


def split_at_pauses(piece: LocalText, chunk: SpeechChunk, min_pause: float = LINE_PAUSE,
                    max_line: float = 7.0) -> list[LocalText]:
    """Split a model's text into subtitle lines using its word times: at every pause VAD found
    (each line then starts at its own speech onset), and at sentence ends once a line is
    longer than `max_line` seconds (twice that at any word)."""
    if len(piece.words) < 2:
        return [piece]
    utterance = chunk.utterance_ids(min_pause)
    groups: list[list[LocalWord]] = []
    last = None
    for word in piece.words:
        current = utterance[chunk.span_index((word.start + word.end) / 2)]
        line = groups[-1] if groups else []
        too_long = bool(line) and (
            (word.start - line[0].start > max_line and line[-1].text.strip().endswith(SENTENCE_END))
            or word.start - line[0].start > 2 * max_line
        )
        if current != last or too_long:
            groups.append([])
            last = current
        groups[-1].append(word)
    if len(groups) == 1:
        return [piece]
    return [_line(g, chunk, piece.scores) for g in groups]


def _line(words: list[LocalWord], chunk: SpeechChunk, scores: Scores | None = None) -> LocalText:
    """A line of words, its times kept inside the speech spans its words belong to (word
    alignment smears short words across pauses); its scores are the piece's, with the tokens
    of its own words."""
    first = chunk.span_index((words[0].start + words[0].end) / 2)
    last = chunk.span_index((words[-1].start + words[-1].end) / 2)
    span_end = chunk.offsets[last] + chunk.spans[last].end - chunk.spans[last].start
    start = max(words[0].start, chunk.offsets[first])
    end = max(start, min(words[-1].end, span_end))
    if scores is not None:
        known = all(w.tokens is not None for w in words)
        scores = replace(scores, tokens=tuple(t for w in words for t in w.tokens or ()) if known else None)
    return LocalText(start, end, "".join(w.text for w in words).strip(), tuple(words), scores)


def tidy_cues(pieces: list[TimedText], min_seconds: float = MIN_CUE, join_gap: float = 1.0) -> list[TimedText]:
    """Lines as subtitles need them: none overlaps the next, none is shorter than
    `min_seconds`. A short line is stretched into the pause after it; with no room there it
    joins the nearer neighbour (the line before only when it ended within `join_gap`).
    Text is never dropped."""
    pending, out = list(pieces), []
    for i, piece in enumerate(pending):
        nxt = pending[i + 1] if i + 1 < len(pending) else None
        limit = nxt.start if nxt is not None else float("inf")
        end = round(max(min(piece.end, limit), min(piece.start + min_seconds, limit)), 3)
        if end - piece.start >= min_seconds - 1e-6 or nxt is None:
            out.append(TimedText(piece.start, end, piece.text, scores=piece.scores, words=piece.words,
                                 speaker=piece.speaker))
            continue
        gap_before = piece.start - out[-1].end if out else float("inf")
        if gap_before <= min(join_gap, nxt.start - piece.end) and out[-1].speaker == piece.speaker:
            last = out[-1]
            out[-1] = TimedText(last.start, max(last.end, end), join_texts([last.text, piece.text]),
                                scores=join_scores(last.scores, piece.scores), words=last.words + piece.words,
                                speaker=last.speaker)
        elif nxt.speaker == piece.speaker:
            pending[i + 1] = TimedText(piece.start, max(nxt.end, piece.end), join_texts([piece.text, nxt.text]),
                                       scores=join_scores(piece.scores, nxt.scores), words=piece.words + nxt.words,
                                       speaker=piece.speaker)
        else:  # a different speaker on each side: the short line stays a line of its own
            out.append(TimedText(piece.start, end, piece.text, scores=piece.scores, words=piece.words,
                                 speaker=piece.speaker))
    return out
