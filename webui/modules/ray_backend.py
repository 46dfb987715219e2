"""Transcription on a Ray cluster (off by default: `python -m webui.cli transcribe ... --ray ADDRESS`).

One long-lived actor per GPU (or per `cpus_per_actor` CPU cores) holds a loaded engine; batch
sizing and release run inside it with the same modules as a single process. Two ways of splitting:

* many files: whole files spread over the actors, longest first (`transcribe_files`);
* one long recording: the driver plans it once (one decode, into a Spool), then its windows run
  on the actors in parallel (`transcribe`). Each window's audio goes to the object store as
  int16 PCM of that window alone, so no process ever holds the whole recording. Windows run
  exactly the code of the single-process pipeline (windows.transcribe_window) and are merged in
  index order; the language is settled first (windows run one at a time until one detects it,
  as a single process would), so the transcript is the single-process one, text and timestamps.

An actor that dies mid-window is replaced and its windows run again elsewhere; results are keyed
by window index, so nothing is lost or doubled, and every finished window is an ordinary
WindowDone event for checkpoint.persist (resume works as on one machine).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from . import audio as audio_mod
from .batching import Tally
from .engines.base import EngineSettings
from .events import Cancelled, Event, Finished, Planned, Progress, Resume, RunStats, SegmentDone, StageClock, WindowDone
from .merge import assemble
from .options import PipelineOptions
from .script import is_known
from .spool import Spool
from .windows import run_window, segments_of

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
IN_FLIGHT = 2  # windows queued per actor: the next one's audio is in its store while one runs


def _pythonpath() -> str:
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def connect(address: str, object_store_mb: int = 200) -> None:
    """`local`: a private cluster on loopback with this machine's cores; `auto` or host:port: join one."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": {"PYTHONPATH": _pythonpath()}}
    if address == "local":
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, object_store_memory=object_store_mb << 20,
                 _node_ip_address="127.0.0.1", runtime_env=env, log_to_driver=False)
    else:
        ray.init(address=address, runtime_env=env, log_to_driver=False)


class _Worker:
    """The actor: one engine, loaded once; windows or whole files in, results out."""

    def __init__(self, settings: EngineSettings, threads: int, factory: str = "") -> None:
        if threads:  # the engines size their thread pools from os.cpu_count(): this actor's share
            os.cpu_count = lambda: threads  # type: ignore[assignment]  (this worker process only)
        if factory:  # "module:Class" taking no arguments (tests: an engine without a model)
            module, name = factory.split(":")
            self.engine = getattr(importlib.import_module(module), name)()
        else:
            from .engines import get_engine

            self.engine = get_engine(settings)

    def describe(self) -> tuple[str, float | None, str]:
        return self.engine.name, self.engine.max_input_seconds, self.engine.device

    def pid(self) -> int:
        return os.getpid()

    def window(self, planned: Planned, n: int, pcm: Sequence[np.ndarray], options: PipelineOptions,
               language: str) -> WindowDone:
        segments = [audio_mod.to_float(p) for p in pcm]
        done = run_window(planned, n, iter(segments), self.engine, options, language)
        if options.diarize is None:
            return done
        # The window's speaker embeddings here, beside its text, from the audio already sent:
        # checkpointed with the window as in one process; only the clustering runs on the driver.
        from .pipeline import embeddings_or_none

        start = segments_of(planned, n)[0].start
        return replace(done, speakers=embeddings_or_none(_window_audio(planned, n, segments), start, n, done,
                                                         self.engine.device))

    def file(self, path: str, options: PipelineOptions) -> list:
        from .pipeline import transcribe

        return [e for e in transcribe(path, options, engine=self.engine)
                if isinstance(e, (Planned, WindowDone, Finished))]


_DIED: tuple = ()


def _died() -> tuple:
    global _DIED
    if not _DIED:
        from ray import exceptions as x

        _DIED = tuple(getattr(x, n) for n in ("RayActorError", "ActorDiedError", "ActorUnavailableError",
                                                "WorkerCrashedError", "OwnerDiedError") if hasattr(x, n))
    return _DIED


@dataclass
class Pool:
    """The actors, each holding a loaded engine; a dead one is replaced on demand."""

    settings: EngineSettings
    size: int
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    factory: str = ""
    start_timeout: float = 600.0  # model loading included

    def __post_init__(self) -> None:
        import ray

        threads = 0 if self.gpus_per_actor else max(1, int(self.cpus_per_actor))
        self._cls = ray.remote(num_cpus=self.cpus_per_actor, num_gpus=self.gpus_per_actor)(_Worker)
        self._args = (self.settings, threads, self.factory)
        # Ray sets OMP_NUM_THREADS to an actor's CPUs; CTranslate2's CPU numbers follow it (a comma
        # for a full stop, a timestamp), so the workers get what a single process here would have.
        omp = os.environ.get("OMP_NUM_THREADS") or str(len(os.sched_getaffinity(0)))
        self._cls = self._cls.options(runtime_env={"env_vars": {"OMP_NUM_THREADS": omp, "PYTHONPATH": _pythonpath()}})
        self.actors = [self._cls.remote(*self._args) for _ in range(self.size)]
        self.replaced = 0
        try:
            self.name, self.max_input_seconds, self.device = ray.get(self.actors[0].describe.remote(),
                                                                     timeout=self.start_timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RuntimeError(f"the Ray cluster found no room for {self.size} worker(s) of {self.cpus_per_actor:g} "
                               f"CPU / {self.gpus_per_actor:g} GPU within {self.start_timeout:g} s") from None

    @classmethod
    def start(cls, address: str, settings: EngineSettings, actors: int = 0, factory: str = "") -> "Pool":
        """Connect, then one actor per GPU of the cluster (or per CPU core where it has none)."""
        import ray

        connect(address)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus and settings.device in ("auto", "cuda") or settings.device.startswith("cuda"):
            return cls(settings, actors or max(1, gpus), cpus_per_actor=1, gpus_per_actor=1, factory=factory)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return cls(settings, actors or max(1, cpus), cpus_per_actor=1, factory=factory)

    def replace(self, actor) -> None:
        """Swap a dead actor for a fresh one (once, however many of its calls report the death)."""
        for i, a in enumerate(self.actors):
            if a is actor:
                self.actors[i] = self._cls.remote(*self._args)
                self.replaced += 1
                log.warning("a Ray worker died; its work goes to a new one (%d replaced so far)", self.replaced)

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _window_audio(planned: Planned, n: int, segments: Sequence[np.ndarray]) -> np.ndarray:
    """Window n's audio from its segments' samples, as the driver's spool reads the window whole
    (segments at their sample offsets, a gap between them silent, nothing past the last sample)."""
    window = segments_of(planned, n)
    first = int(round(window[0].start * audio_mod.SAMPLE_RATE))
    out = np.zeros(max(0, int(round(window[-1].end * audio_mod.SAMPLE_RATE)) - first), np.float32)
    filled = 0
    for segment, samples in zip(window, segments):
        at = int(round(segment.start * audio_mod.SAMPLE_RATE)) - first
        piece = samples[: max(0, out.size - at)]
        out[at:at + piece.size] = piece
        filled = max(filled, at + piece.size)
    return out[:filled]


def _pcm(spool: Spool, planned: Planned, n: int) -> list[np.ndarray]:
    """Window n's segments as int16 (the spool's floats are int16 / 32768 exactly, so this is lossless)."""
    return [np.multiply(spool.read(s.start, s.end), 32768, dtype=np.float32).astype("<i2")
            for s in segments_of(planned, n)]


def transcribe(path: str | Path, options: PipelineOptions, pool: Pool, cancel: threading.Event | None = None,
               resume: Resume | None = None) -> Iterator[Event]:
    """pipeline.transcribe for one recording, its windows spread over the pool's actors."""
    import ray

    from .pipeline import _missing, plan, speakers_at_end

    clock = StageClock()
    with Spool() as spool:
        yield Progress("scan", 0, 1, "finding silences")
        with clock("scan"):
            if resume is None:
                planned = plan(path, options, pool.max_input_seconds, pool.device, spool)
            else:
                planned = resume.plan
                audio_mod.decode_into(path, spool)
        info, segments = planned.info, planned.segments
        yield planned
        yield Progress("scan", 1, 1, f"{len(segments)} segments of at most {planned.max_seconds:g} s")

        done: dict[int, WindowDone] = {w.index: w for w in (resume.done if resume is not None else ())}
        language = options.engine.language
        totals = Tally()
        for w in sorted(done.values(), key=lambda w: w.index):
            language = w.language or language
            totals.add(w.counts)
            for result in w.results:
                yield SegmentDone(result, totals.done, len(segments))
        resumed = len(done)

        def results() -> list:
            return [r for k in sorted(done) for r in done[k].results]

        todo = deque(n for n in range(len(planned.windows)) if n not in done)
        plan_ref = ray.put(planned)
        flying: dict = {}  # ObjectRef -> (window, actor)
        free = {id(a): IN_FLIGHT for a in pool.actors}

        def submit(n: int, actor) -> None:
            ref = actor.window.remote(plan_ref, n, ray.put(_pcm(spool, planned, n)), options, language)
            flying[ref] = (n, actor)
            free[id(actor)] = free.get(id(actor), IN_FLIGHT) - 1

        with clock("asr"):
            while todo or flying:
                if cancel is not None and cancel.is_set():
                    for ref in flying:
                        ray.cancel(ref, force=False)
                    raise Cancelled(assemble(info, pool.name, results(), language, options)[0])
                # until the language is known, one window at a time, in order (as one process would)
                serial = not is_known(language)
                while todo and not (serial and flying):
                    actor = max(pool.actors, key=lambda a: free.get(id(a), IN_FLIGHT))
                    if free.get(id(actor), IN_FLIGHT) <= 0:
                        break
                    submit(todo.popleft(), actor)
                    if serial:
                        break
                ready, _ = ray.wait(list(flying), num_returns=1, timeout=1.0)
                for ref in ready:
                    n, actor = flying.pop(ref)
                    free[id(actor)] = free.get(id(actor), 0) + 1
                    try:
                        window = ray.get(ref)
                    except _died() as exc:
                        log.warning("window %d lost with its worker (%s); running it again", n, type(exc).__name__)
                        pool.replace(actor)
                        free.pop(id(actor), None)
                        todo.appendleft(n)
                        continue
                    if n in done:  # cannot happen (a window is only ever in flight once); never doubled
                        continue
                    done[n] = window
                    language = window.language or language
                    totals.add(window.counts)
                    for result in window.results:
                        yield SegmentDone(result, totals.done, len(segments))
                    yield window
                    yield Progress("transcribe", sum(segments_of(planned, k)[-1].end - segments_of(planned, k)[0].start
                                                     for k in done), info.duration)

    labelled = speakers_at_end(results(), {k: w.speakers for k, w in done.items()}, len(planned.windows), options,
                               clock)
    all_results = labelled.results
    yield Progress("itn", 0, 1)
    with clock("itn"):
        transcript, fallbacks = assemble(info, pool.name, all_results, language, options)
        transcript.turns, transcript.voices = labelled.turns, list(labelled.voices)
    stats = RunStats(
        segments=len(segments), skipped_silent=totals.skipped, batches=totals.batches,
        second_passes=totals.second_passes, speech_seconds=round(sum(r.speech_seconds for r in all_results), 3),
        max_segment_seconds=planned.max_seconds, itn_fallbacks=fallbacks, resumed_windows=resumed,
        missing_seconds=_missing(planned), seconds_by_stage=clock.totals(), diarize_warning=labelled.warning,
        wrote_nothing=not transcript.text.strip(),
    )
    yield Finished(transcript, stats)


def transcribe_files(paths: Sequence[str], options: PipelineOptions, pool: Pool) -> Iterator[tuple[str, object]]:
    """Whole files over the actors, longest first; yields (path, Finished or the exception it raised)
    as each file is done. A file whose actor died runs again from its start on another."""
    import ray

    def length(p: str) -> float:
        try:
            return audio_mod.probe(p).duration
        except Exception:
            return 0.0  # it fails again, with its own message, in the worker

    todo = deque(sorted(paths, key=lambda p: -length(p)))
    flying: dict = {}
    while todo or flying:
        busy = {id(a) for _, a in flying.values()}
        for actor in pool.actors:
            if todo and id(actor) not in busy:
                path = todo.popleft()
                flying[actor.file.remote(path, options)] = (path, actor)
        ready, _ = ray.wait(list(flying), num_returns=1)
        for ref in ready:
            path, actor = flying.pop(ref)
            try:
                events = ray.get(ref)
            except _died():
                pool.replace(actor)
                todo.appendleft(path)
                continue
            except Exception as exc:  # the file's own failure (bad input ...), as the local run raises it
                yield path, exc
                continue
            yield path, events[-1]
