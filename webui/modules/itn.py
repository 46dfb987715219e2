"""Inverse text normalisation of transcript pieces with wetext, keeping raw text where it fails.

The pieces of a window are joined with a separator, normalised in one wetext call (in windows,
since wetext slows down superlinearly on very long strings) and split back, so every subtitle
line gets the same normalisation as the full text. Characters that wetext cannot take are
swapped for a placeholder first and put back afterwards; a piece that wetext still rejects keeps
its raw text and is counted, so one odd line never costs the transcript.

English words that a reader expects to stay words are masked before the call and wetext's
output is tidied after it (itn_english.py).

Chinese goes through wetext as it is.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from .itn_english import english_keep, tidy_english
from .script import is_known
from .transcript import is_cjk

log = logging.getLogger(__name__)

SEPARATOR = "\u241e"    # ␞ joins a window's pieces; both grammars keep it as a token of its own
PLACEHOLDER = "\ue000"  # private use: both grammars pass it through untouched
WINDOW = 50             # pieces per call: ~0.3 s each, linear overall
_LOG_CHARS = 80
_lock = threading.Lock()


@dataclass(frozen=True)
class ItnResult:
    texts: list[str]  # one per input, same order
    fallbacks: int    # pieces left un-normalised because wetext rejected them


@dataclass(frozen=True)
class _Masked:
    """A piece with its protected characters replaced by placeholders, and what to put back."""

    text: str
    originals: tuple[str, ...]
    pads: tuple[tuple[bool, bool], ...]  # per placeholder: space added before, after


@lru_cache(maxsize=4)
def _normalizer(lang: str):
    from wetext import Normalizer

    return Normalizer(lang=lang, operator="itn")


def grammar_for(language: str, sample: str) -> str | None:
    """wetext ships English and Chinese ITN; other languages pass through untouched."""
    lang = (language or "").lower()
    if lang.startswith(("zh", "yue", "cmn")):
        return "zh"
    if lang.startswith("en"):
        return "en"
    if not is_known(lang):
        return "zh" if is_cjk(sample) else "en"
    return None


def _protected(ch: str) -> bool:
    """wetext serialises tokens as `key: "value"` without escaping its input, so `"` and `\\`
    make the English grammar raise and the Chinese one emit escapes; NUL is dropped (or raises
    alone), lone surrogates raise TypeError; the separator and placeholder would be ambiguous.
    Curly double quotes go the same way so that English reads numbers next to them too."""
    if ch in '"\\\u201c\u201d' or ch in (SEPARATOR, PLACEHOLDER):
        return True
    return unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r"


def _mask(text: str, spans: tuple[tuple[int, int], ...] = ()) -> _Masked:
    """Protected characters, and the words in `spans` (sorted, disjoint), each become one placeholder."""
    # Padding the placeholder with spaces keeps it a token of its own, so "twenty five" right
    # after a quote is still read as a number; only the padding is taken away again.
    out, originals, pads = [], [], []
    starts = dict(spans)
    i = 0
    while i < len(text):
        end = starts.get(i)
        if end is None:
            if not _protected(text[i]):
                out.append(text[i])
                i += 1
                continue
            end = i + 1
        before = i > 0 and not text[i - 1].isspace()
        after = end < len(text) and not text[end].isspace()
        out.append(" " * before + PLACEHOLDER + " " * after)
        originals.append(text[i:end])
        pads.append((before, after))
        i = end
    return _Masked("".join(out), tuple(originals), tuple(pads))


def _unmask(masked: _Masked, normalised: str) -> str:
    parts = normalised.split(PLACEHOLDER)
    if len(parts) != len(masked.originals) + 1:
        raise ValueError("wetext lost or added a protected character")
    for k, (before, after) in enumerate(masked.pads):
        if before and parts[k].endswith(" "):
            parts[k] = parts[k][:-1]
        if after and parts[k + 1].startswith(" "):
            parts[k + 1] = parts[k + 1][1:]
    return "".join(p + o for p, o in zip(parts, masked.originals + ("",)))


def _prepare(core: str, grammar: str) -> _Masked:
    spans: tuple[tuple[int, int], ...] = ()
    if grammar == "en":
        try:
            spans = english_keep(core)
        except Exception:  # a bug here must cost the words, not the piece
            log.exception("ITN: no words kept as words in %r", core[:_LOG_CHARS])
    return _mask(core, spans)


def _finish(masked: _Masked, normalised: str, grammar: str) -> str:
    if grammar == "en":
        try:
            normalised = tidy_english(masked.text, normalised)
        except Exception:
            log.exception("ITN: wetext's output left untidied: %r", normalised[:_LOG_CHARS])
    return _unmask(masked, normalised)


def _normalize_joined(normalizer, cores: list[str], grammar: str = "zh") -> list[str]:
    """Stripped, non-blank pieces in one wetext call; raises if wetext fails or blurs a boundary."""
    masked = [_prepare(c, grammar) for c in cores]
    with _lock:  # the FST objects are not documented as thread-safe
        joined = normalizer.normalize(f" {SEPARATOR} ".join(m.text for m in masked))
    parts = joined.split(SEPARATOR)
    if len(parts) != len(masked):
        raise ValueError("wetext merged pieces across a separator")
    return [_finish(m, p.strip(), grammar) for m, p in zip(masked, parts)]


def _normalize_alone(normalizer, core: str, grammar: str = "zh") -> str | None:
    """One piece on its own; None (and a warning) when wetext rejects it."""
    try:
        return _normalize_joined(normalizer, [core], grammar)[0]
    except Exception as exc:  # AssertionError included: wetext asserts on input it cannot parse
        shown = core if len(core) <= _LOG_CHARS else core[:_LOG_CHARS] + "…"
        log.warning("ITN kept the raw text of %r: %s: %s", shown, type(exc).__name__, exc)
        return None


def _outer_space(text: str) -> tuple[str, str]:
    return text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]


def normalize_segments(texts: list[str], language: str) -> ItnResult:
    """ITN of every piece, one output per input; never raises."""
    out = list(texts)
    grammar = grammar_for(language, "".join(texts[:20]))
    todo = [i for i, t in enumerate(texts) if t.strip()]  # blank pieces have nothing to normalise
    if grammar is None or not todo:
        return ItnResult(out, 0)
    try:
        normalizer = _normalizer(grammar)
    except Exception as exc:
        log.warning("ITN unavailable, %d pieces kept raw: %s", len(todo), exc)
        return ItnResult(out, len(todo))
    fallbacks = 0
    for start in range(0, len(todo), WINDOW):
        window = todo[start:start + WINDOW]
        cores = [texts[i].strip() for i in window]
        try:
            results = _normalize_joined(normalizer, cores, grammar)
        except Exception:  # one bad piece must not cost its window: retry piece by piece
            results = [_normalize_alone(normalizer, c, grammar) for c in cores]
        for i, result in zip(window, results):
            if result is None:
                fallbacks += 1
                continue
            lead, trail = _outer_space(texts[i])
            out[i] = lead + result + trail
    return ItnResult(out, fallbacks)
