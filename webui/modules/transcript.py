"""Records that cross stage boundaries (the writers are in writers.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Segment:
    """A stretch of the recording cut at silence, in absolute seconds."""

    index: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


# Whisper's marks of a failed decode (its temperature fallback's log_prob_threshold and
# compression_ratio_threshold): the Whisper engine decodes by them, the second pass reads scores by them.
FAILED_LOGPROB = -1.0
FAILED_COMPRESSION_RATIO = 2.4

# How much text speech needs (the second pass, and the Whisper engine's resumed decodes, judge text
# by them): people say 2-5 words a second, so under MIN_WORDS_PER_SECOND some speech has no text;
# and a word the alignment spreads over STRETCHED_WORD_SECONDS of an input (whose pauses are already
# shortened) stands on speech that has no text of its own: the decoder skipped it (Mandarin: one
# character over 23 s of five utterances). Spoken words last under a second or two.
MIN_WORDS_PER_SECOND = 0.6
STRETCHED_WORD_SECONDS = 3.0
# Chinese characters per second of speech (one syllable each; people say 3–6). Packed Mandarin
# inputs where Whisper wrote one or two utterances of five came back at 0.6-1.6 a second, whole
# ones at 2.3-5 (20 minutes of real clips: CER 25.3 % at 1.5 a second, 21.4 % at 2).
MIN_CJK_PER_SECOND = 2.0
# An input holds speech with its pauses shortened to 0.6 s, so text that leaves this much of its
# speech between two words, or before the first, or after the last, left speech unwritten.
UNWRITTEN_SECONDS = 2.0


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

    def failed(self) -> bool:
        """Unsure of itself or repetitive, by Whisper's own marks."""
        return self.avg_logprob < FAILED_LOGPROB or self.compression_ratio > FAILED_COMPRESSION_RATIO

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
    # the language its text is in, only where the recording holds more than one (merge.assemble)
    language: str = ""

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


@dataclass(frozen=True)
class SpeakerTurn:
    """A stretch of the recording the diarizer gave to one speaker (absolute seconds)."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class SpeakerVoice:
    """One speaker's voice in the recording: the centroid of its embeddings (diarize.known's
    base64 float32), kept with the job so the speaker can be saved as a profile later. Never in
    the exports."""

    speaker: str
    vector: str
    count: int


@dataclass
class Transcript:
    file: str
    duration: float
    model: str
    language: str = ""
    text: str = ""
    text_itn: str = ""
    segments: list[TimedText] = field(default_factory=list)
    turns: list[SpeakerTurn] = field(default_factory=list)  # the diarizer's own turns, when it ran
    voices: list[SpeakerVoice] = field(default_factory=list)  # each speaker's centroid (History only)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "duration": round(self.duration, 3),
            "model": self.model,
            "language": self.language,
            "text": self.text,
            "text_itn": self.text_itn,
            "segments": [_segment_dict(s) for s in self.segments],
            **({"speakers": [{"start": round(t.start, 3), "end": round(t.end, 3), "speaker": t.speaker}
                             for t in self.turns]} if self.turns else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Transcript":
        segments = [_segment_from(s) for s in data.get("segments", [])]
        turns = [SpeakerTurn(float(t["start"]), float(t["end"]), str(t["speaker"])) for t in data.get("speakers") or ()]
        fields = {k: data[k] for k in ("file", "duration", "model", "language", "text", "text_itn") if k in data}
        return cls(segments=segments, turns=turns, **fields)


def _segment_dict(s: TimedText) -> dict:
    data = {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text, "text_itn": s.text_itn}
    if s.speaker is not None:
        data["speaker"] = s.speaker
    if s.language:
        data["language"] = s.language
    if s.scores is not None:
        data["scores"] = s.scores.to_dict()
    if s.words:
        data["words"] = [w.to_dict() for w in s.words]
    return data


def _segment_from(s: dict) -> TimedText:
    return TimedText(float(s["start"]), float(s["end"]), s.get("text", ""), s.get("text_itn", ""),
                     Scores.from_dict(s.get("scores")), tuple(Word.from_dict(w) for w in s.get("words") or ()),
                     s.get("speaker"), str(s.get("language") or ""))


def is_cjk(text: str) -> bool:
    return any("\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" for ch in text)


def spoken_seconds(text: str) -> float:
    """The most speech `text` can account for: 1/MIN_CJK_PER_SECOND a Chinese or Japanese
    character or Korean syllable, 1/MIN_WORDS_PER_SECOND a word of other script (mixed text
    counts both)."""
    characters = sum(1 for ch in text if is_cjk(ch))
    words = len([w for w in text.split() if not is_cjk(w[0])])
    return characters / MIN_CJK_PER_SECOND + words / MIN_WORDS_PER_SECOND


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


# The writers live in writers.py; their names stay importable from here.
from .writers import FORMATS, format_timestamp, formats_for, render, write  # noqa: E402

__all__ = [
    "FORMATS", "Segment", "Scores", "join_scores", "Word", "TimedText", "SpeakerTurn", "SegmentResult", "Transcript",
    "is_cjk", "join_texts", "tidy_spaces", "format_timestamp", "formats_for", "render", "write",
]
