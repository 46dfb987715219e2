"""Records that cross stage boundaries, and the TXT/SRT/VTT/JSON writers."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("txt", "srt", "vtt", "json")


@dataclass(frozen=True)
class Segment:
    """A stretch of the recording cut at silence, in absolute seconds."""

    index: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Scores:
    """What the model reported about one subtitle line (Whisper; engines that report nothing,
    e.g. FunASR, leave a line's `scores` None and verbose_json then omits these fields).

    avg_logprob, no_speech_prob, compression_ratio and temperature are those of the decode (one
    model input) the line's text came from, shared by all of that input's lines as Whisper
    shares them over a 30-s window's segments; `tokens` are the line's own token ids (the
    model's, cut at its word boundaries), None where they cannot be attributed. A line joined
    from two (join_scores): avg_logprob is their mean weighted by token count (equal weights
    when a part's tokens are unknown), no_speech_prob, compression_ratio and temperature the
    higher of the two, tokens both parts' in order (None when a part has none)."""

    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    tokens: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        data = {"avg_logprob": self.avg_logprob, "no_speech_prob": self.no_speech_prob,
                "compression_ratio": self.compression_ratio, "temperature": self.temperature}
        if self.tokens is not None:
            data["tokens"] = list(self.tokens)
        return data

    @classmethod
    def from_dict(cls, data: object) -> "Scores | None":
        """None for a record written without scores (older History rows and checkpoints)."""
        if not isinstance(data, dict):
            return None
        try:
            tokens = data.get("tokens")
            return cls(float(data["avg_logprob"]), float(data["no_speech_prob"]), float(data["compression_ratio"]),
                       float(data["temperature"]), None if tokens is None else tuple(int(t) for t in tokens))
        except (KeyError, TypeError, ValueError):
            return None


def join_scores(first: Scores | None, second: Scores | None) -> Scores | None:
    """The scores of a line made of `first` then `second` (see Scores); None if either is unknown."""
    if first is None or second is None:
        return None
    known = first.tokens is not None and second.tokens is not None
    weights = (len(first.tokens), len(second.tokens)) if known else (1, 1)  # type: ignore[arg-type]
    if first.avg_logprob == second.avg_logprob or sum(weights) == 0:
        avg_logprob = first.avg_logprob  # the same decode: its value, exactly
    else:
        avg_logprob = (first.avg_logprob * weights[0] + second.avg_logprob * weights[1]) / sum(weights)
    return Scores(avg_logprob, max(first.no_speech_prob, second.no_speech_prob),
                  max(first.compression_ratio, second.compression_ratio), max(first.temperature, second.temperature),
                  first.tokens + second.tokens if known else None)  # type: ignore[operator]


@dataclass(frozen=True)
class Word:
    """One word as the model timed it (absolute seconds; Whisper's alignment, FunASR's timestamps)."""

    start: float
    end: float
    text: str
    speaker: str | None = None

    def to_dict(self) -> dict:
        data = {"word": self.text, "start": round(self.start, 3), "end": round(self.end, 3)}
        if self.speaker is not None:
            data["speaker"] = self.speaker
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Word":
        return cls(float(data["start"]), float(data["end"]), str(data.get("word", "")), data.get("speaker"))


@dataclass(frozen=True)
class TimedText:
    """One piece of recognised text with absolute times (seconds)."""

    start: float
    end: float
    text: str
    text_itn: str = ""
    scores: Scores | None = None  # None: the engine does not report them
    words: tuple[Word, ...] = ()   # the model's word times, where it gives them (raw text)
    speaker: str | None = None     # set by diarization

    @property
    def display_text(self) -> str:
        return self.text_itn or self.text


@dataclass(frozen=True)
class SegmentResult:
    """What the engine made of one segment; `pieces` carry absolute times."""

    segment: Segment
    pieces: tuple[TimedText, ...]
    speech_seconds: float
    language: str = ""
    itn_applied: bool = False  # the model did its own ITN, so wetext is skipped

    @property
    def text(self) -> str:
        return join_texts([p.text for p in self.pieces])


@dataclass
class Transcript:
    file: str
    duration: float
    model: str
    language: str = ""
    text: str = ""
    text_itn: str = ""
    segments: list[TimedText] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "duration": round(self.duration, 3),
            "model": self.model,
            "language": self.language,
            "text": self.text,
            "text_itn": self.text_itn,
            "segments": [_segment_dict(s) for s in self.segments],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Transcript":
        segments = [_segment_from(s) for s in data.get("segments", [])]
        fields = {k: data[k] for k in ("file", "duration", "model", "language", "text", "text_itn") if k in data}
        return cls(segments=segments, **fields)


def _segment_dict(s: TimedText) -> dict:
    data = {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text, "text_itn": s.text_itn}
    if s.speaker is not None:
        data["speaker"] = s.speaker
    if s.scores is not None:
        data["scores"] = s.scores.to_dict()
    if s.words:
        data["words"] = [w.to_dict() for w in s.words]
    return data


def _segment_from(s: dict) -> TimedText:
    return TimedText(float(s["start"]), float(s["end"]), s.get("text", ""), s.get("text_itn", ""),
                     Scores.from_dict(s.get("scores")), tuple(Word.from_dict(w) for w in s.get("words") or ()),
                     s.get("speaker"))


def is_cjk(text: str) -> bool:
    return any("\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" for ch in text)


_CJK = "\u3040-\u9fff\uac00-\ud7af\u3000-\u303f\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}])\\s+(?=[{_CJK}])")


def tidy_spaces(text: str) -> str:
    """Models put spaces between Chinese phrases (Whisper) or characters (Paraformer); written
    Chinese has none. Latin words keep theirs."""
    return _SPACE_BETWEEN_CJK.sub("", " ".join(text.split()))


def join_texts(texts: list[str]) -> str:
    """Join pieces of text: with spaces, except between CJK pieces."""
    out = ""
    for text in (t.strip() for t in texts):
        if not text:
            continue
        if out and not (is_cjk(out[-1]) and is_cjk(text[0])):
            out += " "
        out += text
    return out


def format_timestamp(seconds: float, decimal: str = ",") -> str:
    """SRT wants 00:01:02,345; VTT wants 00:01:02.345."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def to_txt(t: Transcript) -> str:
    lines = [f"[{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}] {s.display_text}" for s in t.segments]
    return "\n".join(lines) + ("\n" if lines else "")


def to_srt(t: Transcript) -> str:
    blocks = [
        f"{i}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{' '.join(s.display_text.split())}\n"
        for i, s in enumerate(t.segments, 1)
    ]
    return "\n".join(blocks)


def to_vtt(t: Transcript) -> str:
    blocks = [f"{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}\n{_vtt_text(s.display_text)}\n"
              for s in t.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _vtt_text(text: str) -> str:
    """Cue text as WebVTT requires: '&' and '<' escaped (so '-->' and tags cannot appear),
    one line (a blank line would end the cue)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(escaped.split())


def to_json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), ensure_ascii=False, indent=2)


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json}


def render(t: Transcript, fmt: str) -> str:
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return WRITERS[fmt](t)


def write(t: Transcript, fmt: str, out_dir: Path, stem: str) -> Path:
    """Write atomically (a temporary file, flushed to disk, renamed into place): a full disk or
    a kill leaves the previous file or none, never a truncated one. A full disk may only show at
    the flush or the fsync, so both come before the rename."""
    text = render(t, fmt)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.{fmt}"
    partial = path.with_name(f".{path.name}.part")
    try:
        with open(partial, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass  # e.g. a read-only folder: there is no partial file, and the first error is the one to tell
    return path


__all__ = [
    "FORMATS", "Segment", "Scores", "join_scores", "TimedText", "SegmentResult", "Transcript",
    "is_cjk", "join_texts", "tidy_spaces", "format_timestamp", "render", "write",
]
