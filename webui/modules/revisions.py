"""Corrections of a finished job, kept as revisions: the lines a person saved (times, text,
speaker), checked here before they are stored, and the transcript a revision stands for.

Revision 0 is the model's own output (the job's row in History, never changed); each save
stores the whole list of lines as revision N+1, and restoring revision k saves a copy of it as
the newest, so nothing is ever lost. Everything in a revision comes from a web page and is
untrusted: it is checked (types, times inside the recording and in order, lengths) and stored
as plain text; whatever shows it escapes it (the page's HTML, VTT's cue text).
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field, fields, replace
from typing import Sequence

from .transcript import TimedText, Transcript, join_texts

MAX_TEXT = 2000          # characters in one line
MAX_SPEAKER = 40         # characters in a speaker's name
MAX_LINES = 20_000       # a 3-hour recording has some 2,000-3,000
MAX_PAYLOAD = 4_000_000  # characters of the JSON a page sends
END_SLACK = 0.5          # seconds a line may end past the recording's measured length
_SPEAKERS = "speaker" in {f.name for f in fields(TimedText)}  # diarization's field, where present


class EditError(ValueError):
    """A revision that cannot be saved; str() is one sentence for the page."""


@dataclass(frozen=True)
class Line:
    start: float
    end: float
    text: str
    speaker: str | None = None
    # the line's language where the recording changes language (shown, never part of an edit:
    # to_transcript takes it from the model's line it overlaps most)
    language: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        data = {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}
        if self.speaker:
            data["speaker"] = self.speaker
        return data


def speaker_of(piece: object) -> str | None:
    """A line's speaker where diarization (or an edit) set one."""
    value = getattr(piece, "speaker", None)
    return str(value) if value else None


def lines_of(transcript: Transcript) -> list[Line]:
    """The transcript's lines as a person sees them (ITN text where there is one)."""
    return [Line(p.start, p.end, p.display_text, speaker_of(p), p.language) for p in transcript.segments]


def _clean(value: object, limit: int, what: str, number: int) -> str:
    if not isinstance(value, str):
        raise EditError(f"Line {number}: the {what} must be text.")
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in value)  # no control characters
    text = " ".join(text.split())
    if len(text) > limit:
        raise EditError(f"Line {number}: the {what} is {len(text):,} characters long; at most {limit:,} are kept.")
    return text


def _seconds(value: object, what: str, number: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EditError(f"Line {number}: its {what} time is not a number.")
    return float(value)


def validate(payload: object, duration: float) -> list[Line]:
    """The lines a page sent (a JSON string or a list of {start, end, text, speaker}), checked:
    every time inside the recording, starts in order, each start at or before its end, text
    1..MAX_TEXT characters, speaker up to MAX_SPEAKER. EditError says what is wrong."""
    if isinstance(payload, str):
        if len(payload) > MAX_PAYLOAD:
            raise EditError("The corrections are too large to save in one go.")
        try:
            payload = json.loads(payload)
        except ValueError:
            raise EditError("The corrections could not be read (not JSON); reload the page and try again.") from None
    if not isinstance(payload, list):
        raise EditError("The corrections must be a list of lines.")
    if not payload:
        raise EditError("A transcript needs at least one line.")
    if len(payload) > MAX_LINES:
        raise EditError(f"{len(payload):,} lines: at most {MAX_LINES:,} can be saved.")
    limit = max(0.0, float(duration)) + END_SLACK
    lines: list[Line] = []
    for number, item in enumerate(payload, 1):
        if not isinstance(item, dict):
            raise EditError(f"Line {number} is not a line (start, end, text).")
        start, end = _seconds(item.get("start"), "start", number), _seconds(item.get("end"), "end", number)
        if start < 0 or end > limit:
            raise EditError(f"Line {number}: {start:.2f}–{end:.2f} s is outside the recording (0–{duration:.2f} s).")
        if end < start:
            raise EditError(f"Line {number} ends ({end:.2f} s) before it starts ({start:.2f} s).")
        if lines and start < lines[-1].start:
            raise EditError(f"Line {number} starts ({start:.2f} s) before line {number - 1} ({lines[-1].start:.2f} s): "
                            "lines must stay in time order.")
        text = _clean(item.get("text"), MAX_TEXT, "text", number)
        if not text:
            raise EditError(f"Line {number} has no text; merge it into a neighbour instead.")
        speaker = item.get("speaker")
        speaker = _clean(speaker, MAX_SPEAKER, "speaker", number) if speaker not in (None, "") else ""
        lines.append(Line(round(start, 3), round(end, 3), text, speaker or None))
    return lines


def rename_speaker(lines: list[Line], old: str, new: str) -> list[Line]:
    """Every line of speaker `old` given to `new` (checked like any edit)."""
    new = " ".join(str(new).split())
    if len(new) > MAX_SPEAKER:
        raise EditError(f"A speaker's name has at most {MAX_SPEAKER} characters.")
    return [replace(line, speaker=new or None) if line.speaker == old else line for line in lines]


def to_transcript(base: Transcript, lines: list[Line] | list[dict]) -> Transcript:
    """The transcript that revision `lines` stands for. A line left as the model wrote it keeps
    the model's record (raw text, ITN text, scores, word times); an edited one carries its new
    text as both (the raw text is unknown once a person rewrote it)."""
    lines = [Line(**d) if isinstance(d, dict) else d for d in lines]
    originals = {(round(p.start, 3), round(p.end, 3), p.display_text): p for p in base.segments}
    itn = any(p.text_itn for p in base.segments)
    pieces: list[TimedText] = []
    for line in lines:
        piece = originals.get((round(line.start, 3), round(line.end, 3), line.text))
        if piece is None:
            piece = TimedText(line.start, line.end, line.text, line.text if itn else "",
                              language=_language_over(line, base.segments))
        if _SPEAKERS:
            piece = replace(piece, speaker=line.speaker)
        pieces.append(piece)
    return replace(base, text=join_texts([p.text for p in pieces]),
                   text_itn=join_texts([p.text_itn for p in pieces]) if itn else "", segments=pieces,
                   **_renamed_turns(base, lines))


def _language_over(line: Line, pieces: Sequence[TimedText]) -> str:
    """An edited, split or merged line's language: that of the model's line it overlaps most (or
    lies nearest), where the model's lines name theirs (a recording that changes language)."""
    named = [p for p in pieces if p.language]
    if not named:
        return ""
    return max(named, key=lambda p: min(p.end, line.end) - max(p.start, line.start)).language


def _renamed_turns(base: Transcript, lines: list[Line]) -> dict:
    """The diarizer's turns under the names the revision gave its speakers: a label every line of
    which (matched by start time) now carries one same new name is renamed; the rest stay."""
    turns = getattr(base, "turns", None)
    if not turns:
        return {}
    named: dict[str, set] = {}
    new_speaker = {round(line.start, 3): line.speaker for line in lines}
    for piece in base.segments:
        old = speaker_of(piece)
        if old is not None and round(piece.start, 3) in new_speaker:
            named.setdefault(old, set()).add(new_speaker[round(piece.start, 3)])
    names = {old: next(iter(new)) for old, new in named.items() if len(new) == 1 and None not in new}
    return {"turns": [replace(t, speaker=names.get(t.speaker, t.speaker)) for t in turns]}


def latest(history, record) -> tuple[Transcript, int]:
    """A History record's transcript as its newest revision says, and that revision's number (0:
    the model's own). What downloads and later reads of the job use."""
    base = record.to_transcript()
    saved = history.revision(record.id)
    if saved is None:
        return base, 0
    number, stored = saved
    return to_transcript(base, [Line(float(d["start"]), float(d["end"]), str(d["text"]), d.get("speaker"))
                                for d in stored]), number
