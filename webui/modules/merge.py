"""Merge: the lines of every window in time order, as subtitles need them, Chinese in the chosen
script, then ITN once over the merged text. Never fatal: a piece OpenCC or wetext cannot handle
keeps its text as the model wrote it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from . import itn, script
from .audio import AudioInfo
from .lines import tidy_cues
from .options import PipelineOptions
from .transcript import SegmentResult, TimedText, Transcript, join_texts


def assemble(info: AudioInfo, model: str, results: Sequence[SegmentResult], language: str,
             options: PipelineOptions) -> tuple[Transcript, int]:
    """Merge the lines, put Chinese in the chosen script (every piece once, so subtitles and the
    full text agree; never fatal), then ITN once over the merged text (never fatal: a piece
    wetext rejects keeps its raw text). Returns the transcript and how many pieces ITN left raw.
    A recording spoken in several languages (each input decoded in its own: engines/language_id.py)
    has the pieces of each language handled as a transcript in that language would be, each
    piece names its language, and the transcript's is the one most of its lines are in."""
    pieces = tidy_cues([p for r in results for p in r.pieces])
    run_itn = options.itn and bool(pieces) and not (bool(results) and all(r.itn_applied for r in results))
    itn_texts: list[str] = [""] * len(pieces)
    fallbacks = 0
    languages = _languages(pieces, results, language)
    several = len(set(languages)) > 1  # then each line says which it is in
    for spoken, rows in script.by_language(languages):
        done, texts, failed = _in_language([pieces[i] for i in rows], spoken, options.script, run_itn)
        for i, piece, text in zip(rows, done, texts):
            pieces[i], itn_texts[i] = (replace(piece, language=spoken) if several else piece), text
        fallbacks += failed
    if several:
        language = most_spoken(pieces, languages)
    transcript = Transcript(
        file=Path(info.path).name, duration=round(info.duration, 3), model=model,
        language=language if language != "auto" else "", text=join_texts([p.text for p in pieces]),
        text_itn=join_texts(itn_texts) if run_itn else "", segments=pieces,
    )
    return transcript, fallbacks


def most_spoken(pieces: Sequence[TimedText], languages: Sequence[str]) -> str:
    """The language most of the lines' time is in (the first of equals): a recording's language
    when it holds several. Its decode still follows from its first input's (language_id.spoken),
    but a two-hour Mandarin meeting opened by an English greeting is a Mandarin recording."""
    seconds: dict[str, float] = {}
    for piece, language in zip(pieces, languages):
        seconds[language] = seconds.get(language, 0.0) + max(piece.end - piece.start, 0.0)
    return max(seconds, key=seconds.get)


def _languages(pieces: list[TimedText], results: Sequence[SegmentResult], language: str) -> list[str]:
    """Each merged piece's language: the one its result was decoded in (the recording's where a
    result names none), but Chinese for Chinese text decoded as another (script.chinese_in_other)
    and the recording's for text in letters decoded as Chinese, Japanese or Korean
    (script.letters_in_cjk). A merged piece starts where its first piece did."""
    spoken: dict[float, str] = {}
    for r in results:
        decoded = r.language or language
        for p in r.pieces:
            if script.chinese_in_other(decoded, p.text):
                spoken.setdefault(p.start, "zh")
            else:
                spoken.setdefault(p.start, language if script.letters_in_cjk(decoded, language, p.text) else decoded)
    return [spoken.get(piece.start, language) for piece in pieces]


def _in_language(pieces: list[TimedText], language: str, chosen_script: str, run_itn: bool
                 ) -> tuple[list[TimedText], list[str], int]:
    """Pieces of one language in the chosen script (Chinese only), their ITN text when `run_itn`
    (else their text_itn as it is), and how many pieces ITN left raw."""
    target = script.canonical(chosen_script)
    chinese = bool(pieces) and target != script.KEEP and script.is_chinese(language, [p.text for p in pieces])
    if chinese:
        texts = script.convert([p.text for p in pieces], target)
        model_itn = script.convert([p.text_itn for p in pieces], target)
        pieces = [replace(p, text=t, text_itn=ti) for p, t, ti in zip(pieces, texts, model_itn)]
    if not run_itn or not pieces:
        return pieces, [p.text_itn for p in pieces], 0
    texts = [p.text for p in pieces]
    if chinese and target in (script.TAIWAN, script.HONG_KONG):
        # wetext's Chinese grammar reads Simplified only (萬, 兩, 點 stop it): ITN in
        # Simplified, and only the pieces it changed are written back in the target script.
        simplified = script.convert(texts, script.SIMPLIFIED)
        normalized = itn.normalize_segments(simplified, language)
        changed = [i for i, (s, n) in enumerate(zip(simplified, normalized.texts)) if n != s]
        back = dict(zip(changed, script.convert([normalized.texts[i] for i in changed], target)))
        itn_texts = [back.get(i, t) for i, t in enumerate(texts)]
    else:
        normalized = itn.normalize_segments(texts, language)
        itn_texts = normalized.texts
    return [replace(p, text_itn=n) for p, n in zip(pieces, itn_texts)], itn_texts, normalized.fallbacks
