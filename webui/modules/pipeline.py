"""The orchestrator: the only place that knows the order of the stages.

    probe ─► silence scan ─► cut plan ─► windows ─► streamed decode ─► VAD (chunks) ─► pack
          ─► batches ─► engine (+ second pass) ─► lines in recording time [─► speaker embeddings]
          ─► [one clustering: speakers onto lines] ─► merge ─► ITN ─► Transcript

`transcribe()` is a generator of events so the CLI, the web page, the job queue and the
checkpoint all see the same run. Audio is decoded one window of segments at a time, so host
memory does not grow with the length of the recording; windows share nothing, so a run that
was killed resumes at its first unfinished window with the same result.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

from . import audio as audio_mod
from .batching import Tally
from .engines import get_engine, language_id
from .engines.base import Engine
from .events import (Cancelled, Event, Finished, Planned, Progress, Resume, RunStats, SegmentDone, StageClock,
                     WindowDone)
from .lanes import Halt, Lanes
from .merge import assemble
from .options import PipelineOptions
from .segment import limits_for, plan_segments, plan_windows
from .speakers import Labelled, diarize_results, window_speakers
from .spool import Spool
from .transcript import Segment, SegmentResult
from .window_plan import filled_windows
from .windows import by_utterance, segments_of, transcribe_window

log = logging.getLogger(__name__)


def plan(path: str | Path, options: PipelineOptions, engine_cap: float | None, device: str = "cpu",
         into: Spool | None = None, clock: StageClock | None = None) -> Planned:
    """Probe, scan, cut and window: everything before the model (also used by the VAD view).
    The decoded audio goes `into` the run's spool, so the run never decodes the file twice."""
    clock = clock or StageClock()
    with clock("probe"):
        info = audio_mod.probe(path)
    with clock("decode + silence scan"):
        scan = audio_mod.scan_silences(path, options.silence_noise_db, options.silence_min, into)
    with clock("cut plan"):
        limits = limits_for(scan.duration, options.max_segment, engine_cap)
        segments = plan_segments(scan.duration, scan.silences, scan.envelope_db, limits)
    on_gpu = device.startswith("cuda")
    seconds = options.window_seconds or (1200.0 if on_gpu else 300.0)
    # On the CPU a short first window only pays where there is a wait to shorten: a recording
    # that fits one window is done in about the time the first text would take, and cutting it
    # costs an input at the cut and leaves a CPU worker idle while the first window runs alone.
    # A GPU's window holds 20 minutes in a few large batches: there the first text still helps.
    first = seconds if not on_gpu and scan.duration <= seconds else min(options.first_window_seconds, seconds)
    with clock("window plan"):
        windows = _windows(segments, options, engine_cap, into, first, seconds)
    return Planned(replace(info, duration=scan.duration), tuple(segments), windows, limits.max_seconds, info.duration)


def _windows(segments: list[Segment], options: PipelineOptions, engine_cap: float | None, audio: Spool | None,
             first: float, seconds: float) -> tuple[tuple[int, int], ...]:
    """Windows that end where their packed speech fills the last input (window_plan.py), where
    that can be known before the model: the inputs are packed, the engine's input length is
    known, the decoded audio is at hand, and the VAD is the fast librosa one (a model VAD would
    run twice). Else windows of a fixed length."""
    if options.pack and options.utterance_inputs is not True and engine_cap and audio is not None \
            and options.vad.backend == "librosa":
        return filled_windows(segments, audio.read, options.vad, engine_cap, first, seconds)
    return plan_windows(segments, first, seconds)


def transcribe(path: str | Path, options: PipelineOptions = PipelineOptions(), engine: Engine | None = None,
               cancel: threading.Event | None = None, resume: Resume | None = None) -> Iterator[Event]:
    with Spool() as spool:
        yield from _run(path, options, engine or get_engine(options.engine), cancel, resume, spool)


def _run(path: str | Path, options: PipelineOptions, engine: Engine, cancel: threading.Event | None,
         resume: Resume | None, spool: Spool) -> Iterator[Event]:
    clock = StageClock()
    yield Progress("scan", 0, 1, "finding silences")
    with clock("scan"):
        if resume is None:
            planned = plan(path, options, engine.max_input_seconds, engine.device, spool)
        else:  # the stored plan; the audio is decoded once more, for the windows still to do
            planned = resume.plan
            audio_mod.decode_into(path, spool)
    info, segments = planned.info, planned.segments
    yield planned
    yield Progress("scan", 1, 1, f"{len(segments)} segments of at most {planned.max_seconds:g} s")

    finished = {w.index: w for w in (resume.done if resume is not None else ())}
    language = options.engine.language
    results: list[SegmentResult] = []
    speakers: dict[int, dict | None] = {}  # each window's speaker embeddings, when diarizing
    totals = Tally()
    for window in sorted(finished.values(), key=lambda w: w.index):  # replayed, not redone
        results.extend(window.results)
        speakers[window.index] = window.speakers
        language = window.language or language
        totals.add(window.counts)
        for result in window.results:
            yield SegmentDone(result, totals.done, len(segments))

    def stop_if_cancelled() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(assemble(info, engine.name, results, language, options)[0])

    def steps(n: int, language: str, halt: Halt):  # window n, counted from zero (SegmentDone below)
        audio = spool.ranges((s.start, s.end) for s in _window(planned, n))
        return transcribe_window(planned, n, audio, engine, options, language, Tally(), halt, clock)

    def agrees(done: WindowDone, language: str) -> bool:
        """Cut into the same inputs, and detected alike, or each of its inputs decoded in the
        language it would be with `language` known (a recording that changes language)."""
        return by_utterance(options, language) == by_utterance(options, "auto") and \
            (done.language == language or language_id.same_under(done.decided, language))

    todo = [n for n in range(len(planned.windows)) if n not in finished]
    lanes = Lanes(engine, todo, steps, agrees, cancel)
    try:
        for n in todo:
            stop_if_cancelled()
            done = yield from _relayed(lanes.window(n, language), totals.done, results)
            stop_if_cancelled()  # a window cut short is in the partial transcript, never checkpointed
            if options.diarize is not None:
                with clock("diarize"):
                    done = replace(done, speakers=_window_speakers(spool, planned, n, done, engine.device))
                speakers[n] = done.speakers
            yield done
            language = done.language
            totals.add(done.counts)
            yield Progress("transcribe", _window(planned, n)[-1].end, info.duration)
    finally:
        lanes.close()

    labelled = speakers_at_end(results, speakers, len(planned.windows), options, clock)
    results, diarize_warning = labelled.results, labelled.warning
    yield Progress("itn", 0, 1)
    with clock("itn"):
        transcript, fallbacks = assemble(info, engine.name, results, language, options)
        transcript.turns, transcript.voices = labelled.turns, list(labelled.voices)
    stats = RunStats(
        segments=len(segments), skipped_silent=totals.skipped, batches=totals.batches,
        second_passes=totals.second_passes, speech_seconds=round(sum(r.speech_seconds for r in results), 3),
        max_segment_seconds=planned.max_seconds, itn_fallbacks=fallbacks, resumed_windows=len(finished),
        missing_seconds=_missing(planned),
        seconds_by_stage=clock.totals(), diarize_warning=diarize_warning, wrote_nothing=not transcript.text.strip(),
    )
    yield Finished(transcript, stats)


def _relayed(window: Iterator, before: int, results: list[SegmentResult]):
    """A window's events as the run reports them: its SegmentDone counted on from the `before`
    segments done ahead of it, each result also kept in `results` (the partial transcript of a
    cancel). Returns the window's WindowDone."""
    while True:
        try:
            event = next(window)
        except StopIteration as finished:
            return finished.value
        if isinstance(event, SegmentDone):
            results.append(event.result)
            event = replace(event, done=before + event.done)
        yield event


def speakers_at_end(results: list[SegmentResult], speakers: dict[int, dict | None], windows: int,
                    options: PipelineOptions, clock: StageClock) -> Labelled:
    """One clustering over the whole recording (one label per voice for hours), known voices
    named; the lines as they are when not diarizing."""
    if options.diarize is None:
        return Labelled(results, [])
    with clock("diarize"):
        return diarize_results(results, [speakers.get(n) for n in range(windows)], options.diarize)


def _window_speakers(spool: Spool, planned: Planned, n: int, done, device: str) -> dict | None:
    first, last = _window(planned, n)[0], _window(planned, n)[-1]
    return embeddings_or_none(spool.read(first.start, last.end), first.start, n, done, device)


def embeddings_or_none(samples: np.ndarray, start: float, n: int, done, device: str) -> dict | None:
    """Window n's speaker embeddings, or None (logged) if they cannot be made: the text goes on.
    (Also what a Ray worker runs, on the window's audio it was sent.)"""
    try:
        return window_speakers(samples, start, done.results, device)
    except Exception:
        log.exception("speaker embeddings failed for window %d; the transcript goes on without labels", n)
        return None


def _missing(planned: Planned) -> float:
    """Seconds the container claims beyond what decoded, when that is more than rounding."""
    missing = planned.probed_seconds - planned.info.duration
    return round(missing, 1) if missing > max(2.0, 0.02 * planned.probed_seconds) else 0.0


_window = segments_of
