"""One window of a planned recording, transcribed: VAD on each of its segments, then packing (or
one input per utterance), the batch runner and the lines in recording time. The single-process
pipeline and the Ray workers both run exactly this, so a window's text does not depend on where
it ran, and windows merged in index order give the same transcript either way."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Generator, Iterator, Sequence

import numpy as np

from .batching import Tally, run_chunks, with_progress
from .chunks import make_chunks, pack
from .engines.base import Engine
from .events import Planned, SegmentDone, StageClock, WindowDone
from .lines import UTTERANCE_PAUSE, to_result
from .options import PipelineOptions
from .script import base_language, is_known
from .transcript import Segment, SegmentResult


@dataclass(frozen=True)
class BatchLines:
    """The lines of one finished batch of window `window`, shown before the window is final
    (the second pass may still change them; the window's SegmentDone events then replace them)."""

    window: int
    results: tuple[SegmentResult, ...]
    language: str


def segments_of(planned: Planned, n: int) -> Sequence[Segment]:
    first, last = planned.windows[n]
    return planned.segments[first:last]


# Languages run one utterance per input by default. Chinese is packed like the rest (decoded
# with timestamp tokens: engines/whisper_ct2.py), which on real Mandarin clips halved the inputs
# at a lower CER; Japanese and Korean were never measured packed and stay as they were.
UTTERANCE_LANGUAGES = ("ja", "ko")


def by_utterance(options: PipelineOptions, language: str) -> bool:
    if options.utterance_inputs is not None:
        return options.utterance_inputs
    return base_language(language) in UTTERANCE_LANGUAGES


def transcribe_window(planned: Planned, n: int, audio: Iterator[np.ndarray], engine: Engine,
                      options: PipelineOptions, language: str, tally: Tally, cancel: threading.Event | None = None,
                      clock: StageClock | None = None, results: list[SegmentResult] | None = None,
                      ) -> Generator[object, None, WindowDone]:
    """Transcribe window `n`; `audio` gives the float32 samples of each of its segments in turn.
    Yields Progress and BatchLines after each batch, SegmentDone once the window is final, and
    returns the WindowDone (its language: the one known after it, detected once then kept).
    `tally` runs on from the counts before the window; every result is also appended to
    `results` (the caller's partial transcript on a cancel)."""
    clock = clock or StageClock()
    results = [] if results is None else results
    before, window = replace(tally), segments_of(planned, n)
    with clock("vad"):
        chunks = make_chunks(window, (next(audio) for _ in window), options.vad)
        if by_utterance(options, language):
            chunks = [u for c in chunks for u in c.by_utterance(UTTERANCE_PAUSE)]
        elif options.pack:
            chunks = pack(chunks, engine.max_input_seconds, options.vad.keep_gap)
    fresh: list[tuple[int, object]] = []  # (chunk index, output) of the batch just finished
    decided: list[tuple[str, tuple]] = []  # each first-pass output's language and language ID
    runner = run_chunks(engine, chunks, language, tally, cancel, options.retry_tail_seconds,
                        on_output=lambda i, out: fresh.append((i, out)))
    steps = with_progress(runner, window[0].start, window[-1].end, chunks, planned.info.duration)
    while True:
        with clock("asr"):
            try:
                event = next(steps)
            except StopIteration as finished:
                outputs = finished.value
                break
        yield event
        if fresh:  # the batch's lines at once, not only after the window's last batch
            fresh.sort(key=lambda f: f[0])
            decided += [(out.language, out.heard) for _, out in fresh]
            lines = tuple(to_result(chunks[i], out, options.snap_seconds) for i, out in fresh)
            spoken = language if is_known(language) else (fresh[0][1].language or language)
            fresh.clear()
            yield BatchLines(n, lines, spoken)
    first = len(results)
    for chunk, output in zip(chunks, outputs):
        tally.done += chunk.covers
        tally.skipped += 0 if chunk.spans else chunk.covers
        if output is None:  # silent, or a cancel came before its batch
            continue
        if not is_known(language):
            language = output.language or language  # detected once, then kept
        results.append(to_result(chunk, output, options.snap_seconds))
        yield SegmentDone(results[-1], tally.done, len(planned.segments))
    followed = all(heard for _, heard in decided)
    return WindowDone(n, tuple(results[first:]), language, tally.since(before),
                      decided=tuple(decided) if followed else ())


def run_window(planned: Planned, n: int, audio: Iterator[np.ndarray], engine: Engine, options: PipelineOptions,
               language: str, cancel: threading.Event | None = None) -> WindowDone:
    """transcribe_window run to its end, its events dropped (what a worker returns)."""
    steps = transcribe_window(planned, n, audio, engine, options, language, Tally(), cancel)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
