"""The diarization stage as the pipeline runs it: each window's speaker embeddings (inside the
speech its lines cover), one clustering over the whole recording at the end, and speakers onto
lines: every line gets the speaker whose turn covers it, and a line that spans a speaker change
is split on its word times, so no line ever holds two voices. Lines without word times take the
speaker of the turn that overlaps them most. Diarization never costs the transcript: any failure
leaves the lines unlabelled, with a warning."""

from __future__ import annotations

import logging
from bisect import bisect_right
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from .diarize.base import DiarizeOptions
from .transcript import SegmentResult, SpeakerTurn, SpeakerVoice, TimedText, Word, join_texts

log = logging.getLogger(__name__)
FAILED = "Speaker labels are missing: diarization failed ({}). The transcript is complete."


@dataclass(frozen=True)
class Labelled:
    results: list[SegmentResult]
    turns: list[SpeakerTurn]
    warning: str = ""
    voices: tuple[SpeakerVoice, ...] = ()  # each labelled speaker's centroid (for voice profiles)


def window_speakers(samples: np.ndarray, start: float, results: Sequence[SegmentResult], device: str) -> dict:
    """One window's speaker embeddings (JSON-ready, checkpointed with the window), computed
    inside the speech its lines cover. Raises on failure; the caller keeps the text."""
    from .diarize import embed_window

    spans = [(p.start, p.end) for r in results for p in r.pieces if p.end > p.start]
    return embed_window(samples, start, spans, "cuda" if device.startswith("cuda") else "cpu").to_dict()


def diarize_results(results: Sequence[SegmentResult], windows: Sequence[dict | None],
                    options: DiarizeOptions) -> Labelled:
    """Cluster every window's embeddings once, then label (and split) the lines. A window with no
    embeddings (`None`: its embedding failed) is a failure: labels from part of the recording
    would name the same person differently in the rest."""
    if any(w is None for w in windows):
        return Labelled(list(results), [], FAILED.format("a window's speaker embeddings are missing"))
    try:
        found, names, voices = _cluster_and_name(windows, options)
    except Exception as exc:  # diarization must never cost the transcript
        log.exception("diarization failed")
        return Labelled(list(results), [], FAILED.format(f"{type(exc).__name__}: {exc}"))
    named = [SpeakerTurn(round(t.start, 3), round(t.end, 3), names[t.speaker]) for t in found]
    return Labelled(label_results(results, named), named, voices=voices)


def _cluster_and_name(windows: Sequence[dict], options: DiarizeOptions):
    """(turns numbered 0, 1, ..., {number: label}, voices): one clustering, each cluster's
    centroid, known voices matched to them. A matched speaker's label is the known name, the
    others are "Speaker N" (N by first appearance, as without profiles)."""
    from .diarize import WindowEmbeddings, cluster, stack
    from .diarize.known import encode_vector, match, voices_by_label
    from .diarize.speaker_turns import numbered_turns

    embeddings = [WindowEmbeddings.from_dict(w) for w in windows]
    labels = cluster(embeddings, options)
    found, number_of = numbered_turns(embeddings, labels)
    by_label = voices_by_label(stack(embeddings)[1], labels) if len(labels) else {}  # both in stack's order
    known = match({number_of[k]: v for k, v in by_label.items() if k in number_of}, options.known)
    names = _labels(sorted(set(number_of.values())), known)
    voices = tuple(SpeakerVoice(names[number_of[k]], encode_vector(v.centroid), v.count)
                   for k, v in sorted(by_label.items(), key=lambda kv: number_of.get(kv[0], 1 << 30))
                   if k in number_of)
    return found, names, voices


def _labels(numbers: Sequence[int], known: dict[int, str]) -> dict[int, str]:
    """A known speaker's name, else "Speaker N"; N moves on past a number that a known name
    already uses (a profile called "Speaker 2"), so two voices never share a label by accident."""
    taken = set(known.values())
    names: dict[int, str] = {}
    for n in numbers:
        if n in known:
            names[n] = known[n]
            continue
        k = n + 1
        while f"Speaker {k}" in taken:
            k += 1
        names[n] = f"Speaker {k}"
        taken.add(names[n])
    return names


class TurnIndex:
    """Speaker turns sorted by start, for 'who speaks over [start, end]'."""

    def __init__(self, turns: Sequence[SpeakerTurn]) -> None:
        self.turns = sorted(turns, key=lambda t: (t.start, t.end))
        self.starts = [t.start for t in self.turns]

    def speaker_over(self, start: float, end: float) -> str | None:
        """The speaker with the most time in [start, end]; for a span no turn touches (the
        diarizer's speech edges are not the model's), the nearest turn's."""
        if not self.turns:
            return None
        end = max(end, start)
        first = max(0, bisect_right(self.starts, start) - 1)
        overlap: dict[str, float] = {}
        for turn in self.turns[max(0, first - 1):]:
            if turn.start > end:
                break
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0 or (shared == 0 and start == end and turn.start <= start <= turn.end):
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + max(shared, 1e-9)
        if overlap:
            return max(overlap, key=overlap.__getitem__)
        middle = (start + end) / 2
        return min(self.turns, key=lambda t: min(abs(t.start - middle), abs(t.end - middle))).speaker


def label_results(results: Sequence[SegmentResult], turns: Sequence[SpeakerTurn]) -> list[SegmentResult]:
    """Every line of every result with its speaker, split where the speaker changes."""
    index = TurnIndex(turns)
    if not index.turns:
        return list(results)
    return [replace(r, pieces=tuple(p for piece in r.pieces for p in label_line(piece, index))) for r in results]


def label_line(piece: TimedText, index: TurnIndex) -> list[TimedText]:
    if not piece.words:
        return [replace(piece, speaker=index.speaker_over(piece.start, piece.end))]
    words = [replace(w, speaker=index.speaker_over(w.start, w.end)) for w in piece.words]
    groups: list[list[Word]] = [[words[0]]]
    for word in words[1:]:
        if word.speaker == groups[-1][-1].speaker:
            groups[-1].append(word)
        else:
            groups.append([word])
    if len(groups) == 1:
        return [replace(piece, words=tuple(words), speaker=words[0].speaker)]
    texts = _spelt(piece.text, groups) or [join_texts([w.text for w in group]) for group in groups]
    lines = []
    for i, (group, text) in enumerate(zip(groups, texts)):
        start = piece.start if i == 0 else group[0].start
        end = piece.end if i == len(groups) - 1 else max(group[-1].end, start)
        scores = replace(piece.scores, tokens=None) if piece.scores is not None else None  # tokens were the whole line's
        lines.append(TimedText(round(start, 3), round(end, 3), text, "", scores, tuple(group), group[0].speaker))
    return lines


def _spelt(text: str, groups: list[list[Word]]) -> list[str] | None:
    """The line's text cut where its groups of words meet, as the model spelt it: a word's text is
    kept without the space before it, so joining the words again with spaces wrote "ill
    -disposed" for "ill-disposed". None where the words are not found in the text in order."""
    cuts, at = [], 0
    for group in groups[:-1]:
        for word in group:
            found = text.find(word.text, at)
            if found < 0:
                return None
            at = found + len(word.text)
        cuts.append(at)
    bounds = [0, *cuts, len(text)]
    return [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]


def talk_time(turns: Sequence[SpeakerTurn]) -> dict[str, float]:
    """Seconds each speaker talks (their turns), most first."""
    totals: dict[str, float] = {}
    for t in turns:
        totals[t.speaker] = totals.get(t.speaker, 0.0) + max(0.0, t.end - t.start)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


@dataclass(frozen=True)
class TalkTime:
    """One speaker's share of a recording's talk."""

    speaker: str
    seconds: float
    share: float  # of everyone's talk time, 0..1
    turns: int


def talk_summary(turns: Sequence[SpeakerTurn], lines: Sequence = ()) -> list[TalkTime]:
    """Each speaker's talk time, share and number of turns, most talk first, over
    `current_turns(turns, lines)`."""
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for t in current_turns(turns, lines):
        seconds[t.speaker] = seconds.get(t.speaker, 0.0) + max(0.0, t.end - t.start)
        counts[t.speaker] = counts.get(t.speaker, 0) + 1
    total = sum(seconds.values())
    return sorted((TalkTime(s, round(v, 3), v / total if total > 0 else 0.0, counts[s]) for s, v in seconds.items()),
                  key=lambda x: (-x.seconds, x.speaker))


def current_turns(turns: Sequence[SpeakerTurn], lines: Sequence = ()) -> list[SpeakerTurn]:
    """The diarizer's turns, unless the lines name other speakers (no turns were kept, or a
    correction moved a line to someone the turns do not name): then runs of consecutive lines of
    one speaker. `lines` are anything with start, end and speaker (revisions.Line, TimedText)."""
    named = {line.speaker for line in lines if getattr(line, "speaker", None)}
    if turns and named <= {t.speaker for t in turns}:
        return list(turns)
    out: list[SpeakerTurn] = []
    for line in lines:
        who = getattr(line, "speaker", None)
        if not who:
            continue
        if out and out[-1].speaker == who:
            out[-1] = SpeakerTurn(out[-1].start, max(out[-1].end, line.end), who)
        else:
            out.append(SpeakerTurn(line.start, line.end, who))
    return out
