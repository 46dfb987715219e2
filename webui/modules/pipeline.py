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
from typing import Generator, Iterator, Sequence, Union

from . import audio as audio_mod
from . import itn
from .batching import iter_batches
from .engines import get_engine
from .engines.base import Engine, EngineOutput, EngineSettings, LocalText, LocalWord
from .segment import AUTO, limits_for, plan_segments
from .transcript import Segment, SegmentResult, TimedText, Transcript, is_cjk, join_texts, tidy_spaces
from .vad import SpeechChunk, VadOptions, make_chunk, pack


@dataclass(frozen=True)
class PipelineOptions:
    """Every pipeline setting, with its default, in one place."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    max_segment: Union[float, str] = AUTO     # "auto" (45/60/90 s by length) or seconds
    silence_noise_db: float = -30.0           # silencedetect noise floor
    silence_min: float = 1.2                  # silencedetect minimum silence (s)
    vad: VadOptions = field(default_factory=VadOptions)
    itn: bool = True
    # Audio decoded and sorted into batches at once; None: 5 min on the CPU (batches are
    # small), 20 min on a GPU (room for large batches). Either way a constant, not the length.
    window_seconds: float | None = None
    snap_seconds: float = 0.5                 # pull a text start onto a VAD speech onset this close
    pack: bool = True                         # join neighbouring segments' speech up to the engine's maximum
    retry_tail_seconds: float = 2.0           # re-run speech left untranscribed after an early end (0: off)

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
    second_passes: int = 0
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
    counts = _Tally()
    decoded = audio_mod.stream_ranges(path, [(s.start, s.end) for s in segments])
    try:
        held: list[SpeechChunk] = []
        window_seconds = options.window_seconds or (1200.0 if engine.device == "cuda" else 300.0)
        windows = list(_windows(segments, window_seconds))
        for n, window in enumerate(windows):
            if cancel is not None and cancel.is_set():
                raise Cancelled(_assemble(info, engine, results, language, options, clock))
            with clock("vad"):
                chunks = held + [make_chunk(seg, next(decoded), options.vad) for seg in window]
                held = []
                if options.pack:
                    chunks = pack(chunks, engine.max_input_seconds, options.vad.keep_gap)
                    if n + 1 < len(windows) and chunks and chunks[-1].spans:
                        held = [chunks.pop()]  # a part-filled input waits for the next window's speech
            runner = _run_engine(engine, chunks, language, counts, cancel, options.retry_tail_seconds)
            first = chunks[0].segment.start if chunks else window[0].start
            last = held[0].segment.start if held else window[-1].end
            with clock("asr"):
                outputs = yield from _batch_progress(runner, first, last, chunks, info.duration)
            for chunk, output in zip(chunks, outputs):
                counts.done += chunk.covers
                if not chunk.spans:
                    counts.skipped += chunk.covers
                    continue
                if output is None:  # cancelled before this batch ran
                    continue
                if language in ("", "auto"):
                    language = output.language or language
                results.append(_to_result(chunk, output, options.snap_seconds))
                yield SegmentDone(results[-1], counts.done, len(segments))
            if cancel is not None and cancel.is_set():
                raise Cancelled(_assemble(info, engine, results, language, options, clock))
            # Held speech is not transcribed yet: progress stops where it starts.
            yield Progress("transcribe", held[0].segment.start if held else window[-1].end, info.duration)
    finally:
        decoded.close()

    yield Progress("itn", 0, 1)
    transcript = _assemble(info, engine, results, language, options, clock)
    stats = RunStats(
        segments=len(segments), skipped_silent=counts.skipped, batches=counts.batches,
        second_passes=counts.second_passes,
        speech_seconds=round(sum(r.speech_seconds for r in results), 3),
        max_segment_seconds=max_seconds, seconds_by_stage=clock.totals(),
    )
    yield Finished(transcript, stats)


def _batch_progress(runner, first: float, last: float, chunks: list[SpeechChunk], total: float):
    """Pass the batch runner through, turning each finished batch into a Progress event (the
    window's stretch of the recording shared out by inputs done); returns its outputs."""
    inputs = max(1, sum(1 for c in chunks if c.spans))
    done = 0
    while True:
        try:
            done += next(runner)
        except StopIteration as finished:
            return finished.value
        yield Progress("transcribe", first + (last - first) * min(1.0, done / inputs), total)


def _windows(segments: Sequence[Segment], seconds: float) -> Iterator[list[Segment]]:
    window: list[Segment] = []
    for seg in segments:
        window.append(seg)
        if seg.end - window[0].start >= seconds:
            yield window
            window = []
    if window:
        yield window


def _run_engine(engine: Engine, chunks: list[SpeechChunk], language: str, counts: "_Tally",
                cancel: threading.Event | None, retry_tail: float = 0.0) -> Generator[int, None, list[EngineOutput | None]]:
    """Batch the chunks that hold speech; silent ones never reach the model (no invented text).
    Returns one output per chunk, None where the chunk is silent or a cancel came first.

    With `retry_tail`, an output whose text stops more than that many seconds before its
    input's speech ends is given a second pass over the rest: batched decoders have no
    "seek and continue" and otherwise silently drop what follows an early end-of-text."""
    speech = [i for i, c in enumerate(chunks) if c.spans]
    outputs: list[EngineOutput | None] = [None] * len(chunks)
    language = yield from _run_batches(engine, [chunks[i] for i in speech], language, counts, cancel,
                                       lambda k, out: outputs.__setitem__(speech[k], out))
    if retry_tail <= 0:
        return outputs
    redo = _second_pass_plan(chunks, outputs, speech, retry_tail)
    counts.second_passes += len(redo)
    parts = [chunks[i].slice(lo, hi) for i, lo, hi, _ in redo]
    cleared = {i for i, _, _, replace_all in redo if replace_all}
    for i in cleared:
        outputs[i] = replace(outputs[i], pieces=())

    def merge(k: int, out: EngineOutput) -> None:
        i, lo, _, _ = redo[k]
        pieces = outputs[i].pieces + tuple(_shifted(p, lo) for p in out.pieces)
        outputs[i] = replace(outputs[i], pieces=tuple(sorted(pieces, key=lambda p: p.start)))

    yield from _run_batches(engine, parts, language, counts, cancel, merge)
    return outputs


def _second_pass_plan(chunks, outputs, speech, retry_tail: float):
    """Inputs whose text cannot cover their speech get a second pass (bounded: once each).

    - The text stops early: the rest is run again from the next speech onset.
    - The text is far too sparse for the speech (a batched decoder sometimes skips whole
      utterances): every utterance is run on its own and replaces the first answer.
    Returns (chunk index, local start, local end, replaces the first answer).
    """
    plan = []
    for i in speech:
        out, chunk = outputs[i], chunks[i]
        if out is None or chunk.speech_seconds < 4.0:
            continue
        if _text_units(out) < MIN_UNITS_PER_SECOND * chunk.speech_seconds:
            plan.extend((i, lo, hi, True) for lo, hi in chunk.utterances(UTTERANCE_PAUSE))
        elif (end := _text_end(out)) is not None and chunk.seconds - end > retry_tail:
            plan.append((i, _resume_point(chunk, end), chunk.seconds, False))
    return plan


MIN_UNITS_PER_SECOND = 0.6   # words (or CJK characters) per second of speech; people say 2–5
UTTERANCE_PAUSE = 0.8        # seconds of silence that separate two utterances


def _text_units(output: EngineOutput) -> int:
    text = " ".join(p.text for p in output.pieces)
    return sum(1 for ch in text if is_cjk(ch)) + len([w for w in text.split() if not is_cjk(w[0])])


def _run_batches(engine: Engine, chunks: list[SpeechChunk], language: str, counts: "_Tally",
                 cancel: threading.Event | None, store) -> Generator[int, None, str]:
    """Run the chunks in batches, handing each output to `store`; yields how many inputs each
    batch finished and returns the language (detected once, then kept)."""
    for batch in iter_batches([c.seconds for c in chunks], engine.batch_limit):
        if cancel is not None and cancel.is_set():
            break
        audios = [chunks[k].audio for k in batch]
        try:
            batch_out = engine.transcribe_batch(audios, language)
        finally:
            del audios
            engine.release()  # drop intermediates after every batch, not at the end
        if len(batch_out) != len(batch):
            raise RuntimeError(f"engine returned {len(batch_out)} outputs for {len(batch)} inputs")
        for k, out in zip(batch, batch_out):
            store(k, out)
        counts.batches += 1
        if language in ("", "auto") and batch_out and batch_out[0].language:
            language = batch_out[0].language  # detect once, then keep it for the recording
        yield len(batch)
    return language


def _text_end(output: EngineOutput | None) -> float | None:
    """Where the recognised text stops (local seconds); None when there is nothing to judge."""
    if output is None or not output.pieces:
        return None
    last = output.pieces[-1]
    return last.words[-1].end if last.words else last.end


def _resume_point(chunk: SpeechChunk, text_end: float) -> float:
    """Resume at the next speech onset after the text's end, or right there if mid-span."""
    for offset in chunk.offsets:
        if offset >= text_end - 0.05:
            return offset
    return text_end


def _shifted(piece: LocalText, shift: float) -> LocalText:
    words = tuple(replace(w, start=w.start + shift, end=w.end + shift) for w in piece.words)
    return replace(piece, start=piece.start + shift, end=piece.end + shift, words=words)


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
        pieces.append(TimedText(round(float(start), 3), round(float(max(end, start)), 3), tidy_spaces(piece.text)))
        previous_start = start
    return SegmentResult(chunk.segment, tuple(pieces), round(float(chunk.speech_seconds), 3),
                         output.language, output.itn_applied)


SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")


def split_at_pauses(piece: LocalText, chunk: SpeechChunk, min_pause: float = UTTERANCE_PAUSE,
                    max_line: float = 7.0) -> list[LocalText]:
    """Split a model's text into subtitle lines using its word times: at every pause VAD found
    (each line then starts at its own speech onset), and at sentence ends once a line is
    longer than `max_line` seconds (twice that at any word)."""
    if len(piece.words) < 2:
        return [piece]
    utterance = chunk.utterance_ids(min_pause)
    groups: list[list[LocalWord]] = []
    last = None
    for word in piece.words:
        current = utterance[chunk.span_index((word.start + word.end) / 2)]
        line = groups[-1] if groups else []
        too_long = bool(line) and (
            (word.start - line[0].start > max_line and line[-1].text.strip().endswith(SENTENCE_END))
            or word.start - line[0].start > 2 * max_line
        )
        if current != last or too_long:
            groups.append([])
            last = current
        groups[-1].append(word)
    if len(groups) == 1:
        return [piece]
    return [_line(g, chunk) for g in groups]


def _line(words: list[LocalWord], chunk: SpeechChunk) -> LocalText:
    """A line of words, its times kept inside the speech spans its words belong to (word
    alignment smears short words across pauses)."""
    first = chunk.span_index((words[0].start + words[0].end) / 2)
    last = chunk.span_index((words[-1].start + words[-1].end) / 2)
    span_end = chunk.offsets[last] + chunk.spans[last].end - chunk.spans[last].start
    start = max(words[0].start, chunk.offsets[first])
    end = max(start, min(words[-1].end, span_end))
    return LocalText(start, end, "".join(w.text for w in words).strip(), tuple(words))


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


@dataclass
class _Tally:
    """Running counts for RunStats."""

    batches: int = 0
    skipped: int = 0        # planned segments without speech
    done: int = 0           # planned segments finished
    second_passes: int = 0  # inputs run again because their text could not cover their speech


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
