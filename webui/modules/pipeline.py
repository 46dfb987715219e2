"""The orchestrator: the only place that knows the order of the stages.

    probe ─► silence scan ─► cut plan ─► streamed decode ─► VAD ─► batches ─► engine
          ─► absolute times ─► merge ─► ITN once ─► Transcript

`transcribe()` is a generator of events so the CLI, the web page and the job queue all show
the same progress. Audio is decoded one window of segments at a time, so host memory does
not grow with the length of the recording.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence, Union

from . import audio as audio_mod
from . import itn
from .batching import iter_batches
from .engines import get_engine
from .engines.base import Engine, EngineOutput, EngineSettings, LocalText, LocalWord
from .segment import AUTO, limits_for, plan_segments
from .transcript import Segment, SegmentResult, TimedText, Transcript, join_texts
from .vad import SpeechChunk, VadOptions, make_chunk


@dataclass(frozen=True)
class PipelineOptions:
    """Every pipeline setting, with its default, in one place."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    max_segment: Union[float, str] = AUTO     # "auto" (45/60/90 s by length) or seconds
    silence_noise_db: float = -30.0           # silencedetect noise floor
    silence_min: float = 1.2                  # silencedetect minimum silence (s)
    vad: VadOptions = field(default_factory=VadOptions)
    itn: bool = True
    window_seconds: float = 600.0             # audio decoded and sorted into batches at once
    snap_seconds: float = 0.5                 # pull a text start onto a VAD speech onset this close

    def with_engine(self, **changes) -> "PipelineOptions":
        return replace(self, engine=replace(self.engine, **changes))


@dataclass(frozen=True)
class Progress:
    stage: str          # probe | scan | transcribe | itn
    done: float         # seconds of audio (scan, transcribe) or steps
    total: float
    message: str = ""


@dataclass(frozen=True)
class SegmentDone:
    result: SegmentResult
    done: int
    total: int


@dataclass(frozen=True)
class RunStats:
    segments: int = 0
    skipped_silent: int = 0
    batches: int = 0
    speech_seconds: float = 0.0
    max_segment_seconds: float = 0.0
    seconds_by_stage: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    transcript: Transcript
    stats: RunStats


Event = Union[Progress, SegmentDone, Finished]


class Cancelled(Exception):
    """The caller's cancel event was set; `partial` holds what was finished."""

    def __init__(self, partial: Transcript):
        super().__init__("cancelled")
        self.partial = partial


def plan(path: str | Path, options: PipelineOptions, engine_cap: float | None) -> tuple[audio_mod.AudioInfo, list[Segment], float]:
    """Probe, scan and cut: everything before the model (also used by the VAD view)."""
    info = audio_mod.probe(path)
    scan = audio_mod.scan_silences(path, options.silence_noise_db, options.silence_min)
    limits = limits_for(scan.duration, options.max_segment, engine_cap)
    segments = plan_segments(scan.duration, scan.silences, scan.envelope_db, limits)
    return replace(info, duration=scan.duration), segments, limits.max_seconds


def transcribe(
    path: str | Path,
    options: PipelineOptions = PipelineOptions(),
    engine: Engine | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[Event]:
    clock = _StageClock()
    engine = engine or get_engine(options.engine)
    yield Progress("scan", 0, 1, "finding silences")
    with clock("scan"):
        info, segments, max_seconds = plan(path, options, engine.max_input_seconds)
    yield Progress("scan", 1, 1, f"{len(segments)} segments of at most {max_seconds:g} s")

    language = options.engine.language
    results: list[SegmentResult] = []
    counts = {"batches": 0, "skipped": 0}
    decoded = audio_mod.stream_ranges(path, [(s.start, s.end) for s in segments])
    try:
        for window in _windows(segments, options.window_seconds):
            if cancel is not None and cancel.is_set():
                raise Cancelled(_assemble(info, engine, results, language, options, clock))
            with clock("vad"):
                chunks = [make_chunk(seg, next(decoded), options.vad) for seg in window]
            with clock("asr"):
                outputs = _run_engine(engine, chunks, language, counts, cancel)
            for chunk, output in zip(chunks, outputs):
                if not chunk.spans:
                    counts["skipped"] += 1
                    continue
                if output is None:  # cancelled before this batch ran
                    continue
                if language in ("", "auto"):
                    language = output.language or language
                results.append(_to_result(chunk, output, options.snap_seconds))
                yield SegmentDone(results[-1], len(results) + counts["skipped"], len(segments))
            if cancel is not None and cancel.is_set():
                raise Cancelled(_assemble(info, engine, results, language, options, clock))
            yield Progress("transcribe", window[-1].end, info.duration)
    finally:
        decoded.close()

    yield Progress("itn", 0, 1)
    transcript = _assemble(info, engine, results, language, options, clock)
    stats = RunStats(
        segments=len(segments), skipped_silent=counts["skipped"], batches=counts["batches"],
        speech_seconds=round(sum(r.speech_seconds for r in results), 3),
        max_segment_seconds=max_seconds, seconds_by_stage=clock.totals(),
    )
    yield Finished(transcript, stats)


def _windows(segments: Sequence[Segment], seconds: float) -> Iterator[list[Segment]]:
    window: list[Segment] = []
    for seg in segments:
        window.append(seg)
        if seg.end - window[0].start >= seconds:
            yield window
            window = []
    if window:
        yield window


def _run_engine(engine: Engine, chunks: list[SpeechChunk], language: str, counts: dict,
                cancel: threading.Event | None) -> list[EngineOutput | None]:
    """Batch the chunks that hold speech; silent ones never reach the model (no invented text).
    Returns one output per chunk, None where the chunk is silent or a cancel came first."""
    speech = [i for i, c in enumerate(chunks) if c.spans]
    outputs: list[EngineOutput | None] = [None] * len(chunks)
    for batch in iter_batches([chunks[i].seconds for i in speech], engine.batch_limit):
        if cancel is not None and cancel.is_set():
            break
        audios = [chunks[speech[k]].audio for k in batch]
        try:
            batch_out = engine.transcribe_batch(audios, language)
        finally:
            del audios
            engine.release()  # drop intermediates after every batch, not at the end
        if len(batch_out) != len(batch):
            raise RuntimeError(f"engine returned {len(batch_out)} outputs for {len(batch)} inputs")
        for k, out in zip(batch, batch_out):
            outputs[speech[k]] = out
        counts["batches"] += 1
        if language in ("", "auto") and batch_out and batch_out[0].language:
            language = batch_out[0].language  # detect once, then keep it for the recording
    return outputs


def _to_result(chunk: SpeechChunk, output: EngineOutput, snap: float) -> SegmentResult:
    starts = chunk.span_starts()
    pieces = []
    previous_start = chunk.segment.start
    for piece in (p for raw in output.pieces for p in split_at_pauses(raw, chunk)):
        start = chunk.to_absolute(piece.start, "start")
        end = chunk.to_absolute(max(piece.end, piece.start), "end")
        nearest = min(starts, key=lambda s: abs(s - start)) if starts else start
        if abs(nearest - start) <= snap:
            start = nearest  # VAD onsets are sharper than model timestamps
        start = max(start, previous_start)
        pieces.append(TimedText(round(float(start), 3), round(float(max(end, start)), 3), piece.text))
        previous_start = start
    return SegmentResult(chunk.segment, tuple(pieces), round(float(chunk.speech_seconds), 3),
                         output.language, output.itn_applied)


def split_at_pauses(piece: LocalText, chunk: SpeechChunk, min_pause: float = 0.8) -> list[LocalText]:
    """Split a model's text where VAD found a real pause, using word times when the model has
    them: one subtitle line per stretch of speech, each starting at its own onset."""
    if len(piece.words) < 2:
        return [piece]
    utterance = chunk.utterance_ids(min_pause)
    groups: list[list[LocalWord]] = []
    last = None
    for word in piece.words:
        current = utterance[chunk.span_index((word.start + word.end) / 2)]
        if current != last:
            groups.append([])
            last = current
        groups[-1].append(word)
    if len(groups) == 1:
        return [piece]
    return [LocalText(g[0].start, g[-1].end, "".join(w.text for w in g).strip(), tuple(g)) for g in groups]


def _assemble(info, engine, results, language, options, clock) -> Transcript:
    pieces = [p for r in results for p in r.pieces]
    text = join_texts([p.text for p in pieces])
    model_did_itn = bool(results) and all(r.itn_applied for r in results)
    if options.itn and itn.enabled() and pieces and not model_did_itn:
        with clock("itn"):
            normalized = itn.normalize_segments([p.text for p in pieces], language)
        pieces = [replace(p, text_itn=n) for p, n in zip(pieces, normalized)]
        text_itn = join_texts(normalized)
    else:
        text_itn = ""
    return Transcript(
        file=Path(info.path).name, duration=round(info.duration, 3), model=engine.name,
        language=language if language != "auto" else "", text=text, text_itn=text_itn, segments=pieces,
    )


class _StageClock:
    """Wall seconds per stage, for the benchmark tables."""

    def __init__(self):
        self._totals: dict[str, float] = {}

    def __call__(self, stage: str):
        clock = self

        class _Timer:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                clock._totals[stage] = clock._totals.get(stage, 0.0) + time.perf_counter() - self.t0

        return _Timer()

    def totals(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self._totals.items()}
