"""Inverse text normalisation with wetext, once over the merged transcript.

The segments are joined with a separator that wetext leaves alone, normalised in one pass
(in windows, since wetext slows down superlinearly on very long strings), and split back, so
every subtitle line gets the same normalisation as the full text.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from .transcript import is_cjk

SEPARATOR = " \u241e "  # ␞, survives both the English and the Chinese grammars
WINDOW = 50             # segments per call: ~0.3 s each, linear overall

_enabled = True
_lock = threading.Lock()


def set_enabled(on: bool) -> None:
    """The process-wide ITN switch."""
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    return _enabled


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
    if lang in ("", "auto"):
        return "zh" if is_cjk(sample) else "en"
    return None


def normalize_segments(texts: list[str], language: str) -> list[str]:
    """ITN of every segment text, computed in one pass over the joined text."""
    grammar = grammar_for(language, "".join(texts[:20]))
    if grammar is None or not texts:
        return list(texts)
    normalizer = _normalizer(grammar)
    out: list[str] = []
    for i in range(0, len(texts), WINDOW):
        window = [t.replace(SEPARATOR.strip(), " ") for t in texts[i:i + WINDOW]]
        with _lock:  # the FST objects are not documented as thread-safe
            parts = normalizer.normalize(SEPARATOR.join(window)).split(SEPARATOR.strip())
        if len(parts) != len(window):  # a grammar swallowed a separator: fall back per segment
            with _lock:
                parts = [normalizer.normalize(t) for t in window]
        out.extend(p.strip() for p in parts)
    return out


def normalize_text(text: str, language: str) -> str:
    return normalize_segments([text], language)[0] if text else text
