"""VAD inspection: segmentation and VAD only (no model), for the page's waveform view."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio as audio_mod
from . import pipeline
from .events import StageClock
from .spool import Spool
from .engines.bundled import BUNDLED_NAME as BUNDLED_MODEL, WHISPER_INPUT_SECONDS
from .engines.base import EngineSettings
from .options import PipelineOptions
from .transcript import Segment


@dataclass(frozen=True)
class SegmentView:
    segment: Segment
    spans: tuple[tuple[float, float], ...]  # absolute speech spans
    speech_seconds: float


@dataclass(frozen=True)
class VadInspection:
    info: audio_mod.AudioInfo
    max_seconds: float
    engine_cap: float | None
    segments: tuple[SegmentView, ...]
    peaks: np.ndarray            # peak |amplitude| per bucket over the whole recording
    bucket_seconds: float
    windows: tuple[tuple[int, int], ...] = ()
    seconds_by_stage: dict = field(default_factory=dict)  # wall seconds of each stage before the model

    @property
    def lengths(self) -> list[float]:
        return [v.segment.duration for v in self.segments]

    @property
    def speech_seconds(self) -> float:
        return sum(v.speech_seconds for v in self.segments)


def engine_cap_for(settings: EngineSettings) -> float | None:
    """The longest input the configured model takes, without loading it when that can be avoided:
    the loaded engine's own figure, the bundled Whisper's 30 s, else None (unknown until loaded)."""
    from .engines import is_bundled, loaded_engine

    engine = loaded_engine()
    name = settings.model or BUNDLED_MODEL
    if engine is not None and (engine.name == name or (is_bundled(settings.model) and engine.name == BUNDLED_MODEL)):
        return float(engine.max_input_seconds)
    if is_bundled(settings.model):
        return WHISPER_INPUT_SECONDS
    return None


def inspect_vad(path: str | Path, options: PipelineOptions, engine_cap: float | None,
                buckets: int = 1200) -> VadInspection:
    """Segmentation and VAD only (no model): segments, speech spans and a waveform outline."""
    from .chunks import agree_at_cuts, make_chunk
    from .vads import speech_spans

    # librosa imports lazily on first use: a once-per-process cost, kept out of the stage times.
    make_chunk(Segment(0, 0.0, 0.1), np.full(1600, 0.1, np.float32), options.vad)
    clock = StageClock()
    with Spool() as spool:
        planned = pipeline.plan(path, options, engine_cap, into=spool, clock=clock)
        info, segments, max_seconds = planned.info, planned.segments, planned.max_seconds
        bucket_seconds = max(info.duration / buckets, 1.0 / audio_mod.SAMPLE_RATE)
        peaks = np.zeros(int(np.ceil(info.duration / bucket_seconds)) + 1, dtype=np.float32)
        views: list[SegmentView] = []

        def vad(seg: Segment):
            samples = spool.read(seg.start, seg.end)
            return samples, speech_spans(samples, seg.start, options.vad)

        # A window at a time, as the run sees it: its segments' VADs agree at the cuts between
        # them (chunks.agree_at_cuts), not across windows. numpy lets go of the GIL: two
        # segments at a time (memory stays a window's samples).
        with ThreadPoolExecutor(max_workers=2) as pool:
            for first, last in planned.windows:
                group = segments[first:last]
                with clock("VAD"):
                    heard = list(pool.map(vad, group))
                    agreed = agree_at_cuts(group, [spans for _, spans in heard])
                    done = [(samples, make_chunk(seg, samples, options.vad, spans))
                            for seg, (samples, _), spans in zip(group, heard, agreed)]
                for seg, (samples, chunk) in zip(group, done):
                    views.append(SegmentView(seg, tuple((s.start, s.end) for s in chunk.spans),
                                             round(chunk.speech_seconds, 3)))
                    with clock("waveform outline"):
                        _add_peaks(peaks, samples, seg.start, bucket_seconds)
    return VadInspection(info, max_seconds, engine_cap, tuple(views), peaks, bucket_seconds, planned.windows,
                         clock.totals())


def _add_peaks(peaks: np.ndarray, samples: np.ndarray, start: float, bucket_seconds: float) -> None:
    """Fold |samples| (starting at `start` s) into the per-bucket peak outline."""
    if not samples.size:
        return
    per_bucket = bucket_seconds * audio_mod.SAMPLE_RATE
    first = int(round(start * audio_mod.SAMPLE_RATE))
    b0 = int(first // per_bucket)
    b1 = int((first + samples.size - 1) // per_bucket)
    starts = np.ceil(np.arange(b0, b1 + 1) * per_bucket).astype(np.int64) - first
    starts = np.unique(np.clip(starts, 0, samples.size - 1))
    maxima = np.maximum.reduceat(np.abs(samples), starts)
    target = np.clip((first + starts) // per_bucket, 0, peaks.size - 1).astype(np.int64)
    np.maximum.at(peaks, target, maxima)
