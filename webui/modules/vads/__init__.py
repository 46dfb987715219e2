"""VAD inside a segment: a backend finds speech regions, `speech_spans` turns them into
padded, merged absolute spans. librosa (frame energy, with Silero taking out the stretches that
hold no voice: voice_check.py) is the default; the model VADs load lazily."""

from __future__ import annotations

import importlib

import numpy as np

from ..audio import SAMPLE_RATE
from . import voice_check
from .base import Region, SpeechSpan, VadBackend, VadOptions

# name -> (module, function); model VADs import torch, so they are imported only when chosen.
_BACKENDS = {
    "librosa": ("librosa_vad", "regions"),
    "fsmn-vad": ("models", "fsmn_vad_regions"),
    "silero-vad": ("models", "silero_vad_regions"),
}
VAD_BACKENDS = tuple(_BACKENDS)


def get_backend(name: str) -> VadBackend:
    if name not in _BACKENDS:
        raise ValueError(f"unknown VAD {name!r}; choose from {', '.join(VAD_BACKENDS)}")
    module, function = _BACKENDS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def speech_spans(audio: np.ndarray, offset: float, opts: VadOptions = VadOptions()) -> list[SpeechSpan]:
    """Absolute speech spans of `audio`, which starts at `offset` seconds in the recording."""
    backend = get_backend(opts.backend)  # an unknown name fails even on silent audio
    if audio.size == 0:
        return []
    peak = float(np.max(np.abs(audio)))
    if peak <= 0 or 20 * np.log10(peak) < opts.floor_db:
        return []
    total = audio.size / SAMPLE_RATE
    spans: list[SpeechSpan] = []
    regions = backend(audio, opts)
    if opts.voice_check and opts.backend == "librosa":
        regions = voice_check.voiced(audio, regions)  # energy finds music too: Silero takes it out
    for lo, hi in regions:
        if hi - lo < opts.min_speech:
            continue
        start = max(0.0, lo - opts.pad)
        end = min(total, hi + opts.pad)
        if spans and start - (spans[-1].end - offset) <= opts.keep_gap:
            spans[-1] = SpeechSpan(spans[-1].start, round(offset + end, 3))
        else:
            spans.append(SpeechSpan(round(offset + start, 3), round(offset + end, 3)))
    return spans


__all__ = ["VAD_BACKENDS", "Region", "SpeechSpan", "VadBackend", "VadOptions", "get_backend", "speech_spans"]
