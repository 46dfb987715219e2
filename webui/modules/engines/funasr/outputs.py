"""The Fun-ASR model families we run, and their raw outputs turned into timed pieces."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from ...transcript import is_cjk, join_texts
from ..base import LocalText, LocalWord

PIECE_PAUSE_S = 0.5  # a gap this long between Paraformer tokens starts a new piece
PIECE_MAX_S = 12.0  # Paraformer has no punctuation: cap a piece so subtitles stay readable

_TAG = re.compile(r"<\|([^|]*)\|>")


@dataclass(frozen=True)
class Family:
    name: str
    # SenseVoice (CTC) and Paraformer (non-autoregressive) run one encoder pass whatever the
    # length, so 90 s is safe. Nano decodes autoregressively with an LLM: cost grows with the
    # text and long inputs invite repetition, so it gets the 30 s its own VAD recipe uses.
    max_input_seconds: float
    # Our language codes -> what the model's `language=` expects; empty: no language option.
    languages: Mapping[str, str]


SENSEVOICE = Family("sensevoice", 90.0, {c: c for c in ("auto", "zh", "en", "yue", "ja", "ko")})
PARAFORMER = Family("paraformer", 90.0, {})
NANO = Family("nano", 30.0, {"zh": "中文", "en": "英文", "ja": "日文"})

FAMILY_OF_CLASS: Mapping[str, Family] = {
    "SenseVoiceSmall": SENSEVOICE,
    "Paraformer": PARAFORMER,
    "SeacoParaformer": PARAFORMER,
    "BiCifParaformer": PARAFORMER,
    "ContextualParaformer": PARAFORMER,
    "FunASRNano": NANO,
}
# Model class -> name of the keyword its inference() reads hotwords from.
HOTWORD_ARG: Mapping[str, str] = {"SeacoParaformer": "hotword", "ContextualParaformer": "hotword", "FunASRNano": "hotwords"}


def split_sensevoice_tags(raw: str) -> tuple[str, str]:
    """'<|en|><|NEUTRAL|><|Speech|><|woitn|>hello' -> ('en', 'hello')."""
    language = next((t for t in _TAG.findall(raw) if t in SENSEVOICE.languages and t != "auto"), "")
    return language, join_texts(_TAG.sub(" ", raw).split())


def sensevoice_pieces(text: str, words: Sequence[str], timestamps_ms: Sequence[Sequence[int]],
                      seconds: float) -> tuple[LocalText, ...]:
    """One piece of SenseVoice text (tags already removed) with word times from its
    `output_timestamp` alignment, so subtitle lines and the second pass work as for Whisper.
    Words are spelt back with the spaces the text has; when they do not spell the text (a
    token the alignment merged or split) the piece keeps no word times rather than wrong ones."""
    if not text:
        return ()
    if len(words) != len(timestamps_ms) or not words:
        return (LocalText(0.0, seconds, text),)
    timed, rest = [], text
    for word, (start, end) in zip(words, timestamps_ms):
        word = word.strip()
        position = rest.find(word) if word else -1
        if position < 0 or rest[:position].strip():
            return (LocalText(0.0, seconds, text),)
        start_s, end_s = min(max(start / 1000, 0.0), seconds), min(max(end / 1000, 0.0), seconds)
        timed.append(LocalWord(start_s, max(start_s, end_s), rest[:position] + word))  # keeps the space before it
        rest = rest[position + len(word):]
    if rest.strip():
        return (LocalText(0.0, seconds, text),)
    return (LocalText(timed[0].start, timed[-1].end, text, tuple(timed)),)


def paraformer_pieces(text: str, timestamps_ms: Sequence[Sequence[int]], seconds: float) -> tuple[LocalText, ...]:
    """Pieces split at pauses, with word times, from Paraformer's space-separated tokens and
    their [start, end] ms."""
    tokens = text.split()
    if not tokens:
        return ()

    def clamp(ms: float) -> float:
        return min(max(ms / 1000, 0.0), seconds)

    spans = [(clamp(t[0]), clamp(t[1])) for t in timestamps_ms]
    if len(spans) != len(tokens):  # funasr merged or dropped tokens: one piece, no word times
        start, end = (spans[0][0], spans[-1][1]) if spans else (0.0, seconds)
        return (LocalText(start, max(start, end), join_texts(tokens)),)
    # LocalWord spelling: a leading space where the language separates words.
    words = [LocalWord(s, max(s, e), tok if is_cjk(tok[0]) else " " + tok) for tok, (s, e) in zip(tokens, spans)]
    groups, first = [], 0
    for i in range(1, len(words)):
        pause = words[i].start - words[i - 1].end
        if pause >= PIECE_PAUSE_S or words[i].end - words[first].start > PIECE_MAX_S:
            groups.append(words[first:i])
            first = i
    groups.append(words[first:])
    return tuple(LocalText(g[0].start, g[-1].end, "".join(w.text for w in g).strip(), tuple(g)) for g in groups)


def zero_padded_frames(module: torch.nn.Module, args: Any, output: tuple) -> tuple:
    """Forward hook on Paraformer's encoder: zero the frames past each input's length.

    The CIF predictor's convolution reads one frame beyond the end; alone that frame is its
    zero padding, in a batch it is encoder output on padding, which changes the last token.
    """
    frames, lengths = output[0], output[1]
    keep = torch.arange(frames.size(1), device=frames.device)[None, :] < lengths[:, None]
    return (frames * keep[..., None].to(frames.dtype), *output[1:])
