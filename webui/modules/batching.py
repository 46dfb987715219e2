"""Batch planning and the batch runner: longest first, each batch sized by the engine right
before it runs, intermediates released after every batch, then the second pass."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, Sequence

from . import second_pass
from .chunks import SpeechChunk
from .engines.base import Engine, EngineOutput
from .events import Progress, WindowCounts
from .hostmem import trim_host_heap
from .lines import UTTERANCE_PAUSE
from .script import by_language, is_known

# limit(padded_seconds) -> how many inputs of that padded length may share the next batch
BatchLimit = Callable[[float], int]

_sizes_lock = threading.Lock()
_sizes: dict[int, int] = {}  # inputs in a batch -> batches run with that many, since the process started


def batch_size_counts() -> dict[int, int]:
    """How many batches of each size (inputs) this process has run (for /metrics)."""
    with _sizes_lock:
        return dict(_sizes)


@dataclass
class Tally:
    """Running counts for RunStats."""

    batches: int = 0
    skipped: int = 0        # planned segments without speech
    done: int = 0           # planned segments finished
    second_passes: int = 0  # inputs run again because their text could not cover their speech

    def add(self, counts: WindowCounts) -> None:
        self.done += counts.segments
        self.skipped += counts.skipped
        self.batches += counts.batches
        self.second_passes += counts.second_passes

    def since(self, before: "Tally") -> WindowCounts:
        return WindowCounts(self.done - before.done, self.skipped - before.skipped,
                            self.batches - before.batches, self.second_passes - before.second_passes)


def iter_batches(durations: Sequence[float], limit: BatchLimit) -> Iterator[list[int]]:
    """Yield groups of indices into `durations`, longest first.

    Sorting by length keeps padding small; the longest input of a batch sets its padded
    length. The generator asks `limit` lazily, right before each batch is handed out, so a
    GPU engine sizes every batch from the memory free at that moment.
    """
    order = sorted(range(len(durations)), key=lambda i: (-durations[i], i))
    pos = 0
    while pos < len(order):
        cap = max(1, int(limit(durations[order[pos]])))
        yield order[pos:pos + cap]
        pos += cap


def run_chunks(engine: Engine, chunks: list[SpeechChunk], language: str, tally: Tally,
               cancel: threading.Event | None, retry_tail: float = 0.0,
               on_output: Callable[[int, EngineOutput], None] | None = None,
               ) -> Generator[int, None, list[EngineOutput | None]]:
    """Transcribe the chunks that hold speech (silent ones never reach the model: no invented
    text), then give a second pass to what their text did not cover (`retry_tail` > 0).
    Yields how many inputs each batch finished; returns one output per chunk, None where the
    chunk is silent or a cancel came first. `on_output(chunk index, output)` sees each first-pass
    output as its batch finishes (a preview: the second pass may still change it)."""
    speech = [i for i, c in enumerate(chunks) if c.spans]
    outputs: list[EngineOutput | None] = [None] * len(chunks)

    def first_pass(k: int, out: EngineOutput) -> None:
        outputs[speech[k]] = out
        if on_output is not None:
            on_output(speech[k], out)

    language = yield from run_batches(engine, [chunks[i] for i in speech], language, tally, cancel, first_pass)
    if retry_tail <= 0:
        return outputs
    redo = second_pass.plan(chunks, outputs, retry_tail)
    for _ in range(second_pass.MAX_RERUNS):
        if not redo:
            break
        tally.second_passes += len(redo)
        second_pass.cleared(outputs, redo)
        slices = [chunks[r.index].slice(r.start, r.end) for r in redo]
        answers: list[EngineOutput | None] = [None] * len(redo)

        def merge(k: int, out: EngineOutput) -> None:  # called within this pass only
            if second_pass.keeps(redo[k], slices[k], out):
                answers[k] = out
                outputs[redo[k].index] = second_pass.merged(outputs[redo[k].index], out, redo[k].start)

        # each rerun in the language its input was decoded in (a recording may change language)
        decoded_in = [(out.language if out is not None else "") or language for out in (outputs[r.index] for r in redo)]
        for spoken, ks in by_language(decoded_in):
            yield from run_batches(engine, [slices[k] for k in ks], spoken, tally, cancel,
                                   lambda j, out, ks=ks: merge(ks[j], out))
        redo = second_pass.follow_up(redo, slices, answers, retry_tail)
    return outputs


def run_batches(engine: Engine, chunks: list[SpeechChunk], language: str, tally: Tally,
                cancel: threading.Event | None, store: Callable[[int, EngineOutput], None]) -> Generator[int, None, str]:
    """Run the chunks in batches, handing each output to `store`; yields how many inputs each
    batch finished and returns the language (detected once, then kept)."""
    for batch in iter_batches([c.seconds for c in chunks], engine.batch_limit):
        if cancel is not None and cancel.is_set():
            break
        audios = [chunks[k].audio for k in batch]
        # Where each input's utterances lie, for an engine that can use them (base.Utterances).
        extra = {"utterances": [chunks[k].utterances(UTTERANCE_PAUSE) for k in batch]} \
            if getattr(engine, "takes_utterances", False) else {}
        try:
            batch_out = engine.transcribe_batch(audios, language, **extra)
        finally:
            del audios
            engine.release()  # drop intermediates after every batch, not at the end
            trim_host_heap()
        if len(batch_out) != len(batch):
            raise RuntimeError(f"engine returned {len(batch_out)} outputs for {len(batch)} inputs")
        for k, out in zip(batch, batch_out):
            store(k, out)
        tally.batches += 1
        with _sizes_lock:
            _sizes[len(batch)] = _sizes.get(len(batch), 0) + 1
        if not is_known(language) and batch_out and batch_out[0].language:
            language = batch_out[0].language  # detect once, then keep it for the recording
        yield len(batch)
    return language


def with_progress(runner: Generator[int, None, list],  first: float, last: float, chunks: list[SpeechChunk], total: float):
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
