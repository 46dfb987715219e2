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
from .transcript import SegmentResult, Transcript, join_texts


def assemble(info: AudioInfo, model: str, results: Sequence[SegmentResult], language: str,
             options: PipelineOptions) -> tuple[Transcript, int]:
    """Merge the lines, put Chinese in the chosen script (every piece once, so subtitles and the
    full text agree; never fatal), then ITN once over the merged text (never fatal: a piece
    wetext rejects keeps its raw text). Returns the transcript and how many pieces ITN left raw."""
    pieces = tidy_cues([p for r in results for p in r.pieces])
    model_did_itn = bool(results) and all(r.itn_applied for r in results)
    target = script.canonical(options.script)
    chinese = bool(pieces) and target != script.KEEP and script.is_chinese(language, [p.text for p in pieces])
    if chinese:
        texts = script.convert([p.text for p in pieces], target)
        model_itn = script.convert([p.text_itn for p in pieces], target)
        pieces = [replace(p, text=t, text_itn=ti) for p, t, ti in zip(pieces, texts, model_itn)]
    text_itn, fallbacks = "", 0
    if options.itn and pieces and not model_did_itn:
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
        pieces = [replace(p, text_itn=n) for p, n in zip(pieces, itn_texts)]
        text_itn, fallbacks = join_texts(itn_texts), normalized.fallbacks
    transcript = Transcript(
        file=Path(info.path).name, duration=round(info.duration, 3), model=model,
        language=language if language != "auto" else "", text=join_texts([p.text for p in pieces]),
        text_itn=text_itn, segments=pieces,
    )
    return transcript, fallbacks
