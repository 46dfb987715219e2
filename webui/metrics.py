"""Prometheus metrics for GET /metrics, and the sampler behind the System tab's chart.

Every figure is read from live state when Prometheus scrapes (custom collectors on a registry of
our own, never the global one): the job queue, GPU memory (gpu.memory_stats), out-of-memory
back-offs, batch sizes (batching.batch_size_counts) and the process (prometheus_client's
ProcessCollector: host RSS, CPU, file descriptors). Finished jobs are folded into counters by
`JobTally`, which reads the queue's job list at each scrape and each sampler tick (every 10 s);
the queue keeps the last 500 finished jobs, so no job is missed unless more than 500 finish
within one tick.

`Sampler` is a daemon thread the server starts: every `every` seconds it appends GPU memory,
host RSS and queue depth to a bounded ring buffer (`RING`, the last hour), which the System tab
draws.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .modules import batching, gpu
from .modules.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobQueue

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
SAMPLE_SECONDS = 10.0
WINDOW_SECONDS = 3600.0


# --- finished jobs -----------------------------------------------------------------------

class JobTally:
    """Counters of the jobs a queue has finished since the process started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counted: set[str] = set()
        self.finished = {DONE: 0, FAILED: 0, CANCELLED: 0}
        self.audio_seconds = 0.0        # recording length of the jobs that finished done
        self.processing_seconds = 0.0   # their wall time, from start (model load included) to end
        self.rtf_counts = [0] * (len(RTF_BUCKETS) + 1)  # per bucket, the last one +Inf
        self.rtf_sum = 0.0

    def reconcile(self, queue: JobQueue) -> None:
        """Count every finished job not counted yet; forget ids the queue no longer holds."""
        states = queue.jobs()
        with self._lock:
            present = set()
            for state in states:
                present.add(state.id)
                if not state.finished or state.id in self._counted:
                    continue
                self._counted.add(state.id)
                self.finished[state.status] = self.finished.get(state.status, 0) + 1
                if state.status == DONE and state.duration > 0:
                    self.audio_seconds += state.duration
                    if state.started_at is not None and state.finished_at is not None:
                        wall = max(0.0, state.finished_at - state.started_at)
                        self.processing_seconds += wall
                        rtf = wall / state.duration
                        self.rtf_sum += rtf
                        self.rtf_counts[_bucket(rtf, RTF_BUCKETS)] += 1
            self._counted &= present

    def snapshot(self) -> "JobTally":
        copy = JobTally()
        with self._lock:
            copy.finished = dict(self.finished)
            copy.audio_seconds, copy.processing_seconds = self.audio_seconds, self.processing_seconds
            copy.rtf_counts, copy.rtf_sum = list(self.rtf_counts), self.rtf_sum
        return copy


_tallies: "weakref.WeakKeyDictionary[JobQueue, JobTally]" = weakref.WeakKeyDictionary()
_tallies_lock = threading.Lock()


def tally_for(queue: JobQueue) -> JobTally:
    """The one tally of a queue (shared by /metrics and the sampler)."""
    with _tallies_lock:
        tally = _tallies.get(queue)
        if tally is None:
            tally = _tallies[queue] = JobTally()
        return tally


def _bucket(value: float, bounds: Iterable[float]) -> int:
    for i, bound in enumerate(bounds):
        if value <= bound:
            return i
    return len(tuple(bounds))


def _histogram(name: str, doc: str, bounds: tuple, counts: list[int], total: float) -> HistogramMetricFamily:
    buckets, running = [], 0
    for bound, count in zip((*bounds, float("inf")), counts):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else _le(bound), running))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


def _le(bound: float) -> str:
    return str(float(bound))


# --- collectors ------------------------------------------------------------------------

class QueueCollector(Collector):
    """The queue and its finished jobs, read at scrape time."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        tally = tally_for(self.queue)
        tally.reconcile(self.queue)
        counts = tally.snapshot()
        waiting, running = self.queue.waiting(), int(self.queue.busy())

        depth = GaugeMetricFamily("asr_queue_depth", "Jobs waiting plus the one running.")
        depth.add_metric([], waiting + running)
        yield depth
        active = GaugeMetricFamily("asr_jobs_active", "Jobs not finished yet, by status.", labels=["status"])
        active.add_metric([QUEUED], waiting)
        active.add_metric([RUNNING], running)
        yield active
        finished = CounterMetricFamily("asr_jobs_finished", "Jobs finished since the server started, by status.",
                                       labels=["status"])
        for status in (DONE, FAILED, CANCELLED):
            finished.add_metric([status], counts.finished.get(status, 0))
        yield finished
        audio = CounterMetricFamily("asr_audio_seconds", "Seconds of audio in jobs transcribed completely (done).")
        audio.add_metric([], counts.audio_seconds)
        yield audio
        work = CounterMetricFamily("asr_processing_seconds",
                                   "Wall seconds those jobs took, model loading included.")
        work.add_metric([], counts.processing_seconds)
        yield work
        yield _histogram("asr_job_real_time_factor",
                         "Per done job: wall seconds / audio seconds (below 1 is faster than real time).",
                         RTF_BUCKETS, counts.rtf_counts, counts.rtf_sum)


class EngineCollector(Collector):
    """Batches, out-of-memory back-offs, the loaded model and GPU memory, read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from .modules.engines import loaded_engine

        sizes = batching.batch_size_counts()
        counts = [0] * (len(BATCH_BUCKETS) + 1)
        for size, n in sizes.items():
            counts[_bucket(size, BATCH_BUCKETS)] += n
        yield _histogram("asr_batch_size", "Inputs per batch the model ran.", BATCH_BUCKETS, counts,
                         float(sum(size * n for size, n in sizes.items())))
        oom = CounterMetricFamily("asr_oom_backoffs", "Batches halved after the GPU ran out of memory.")
        oom.add_metric([], gpu.oom_event_count())
        yield oom

        engine = loaded_engine()
        model = GaugeMetricFamily("asr_model_loaded", "1 while a model is loaded (its name and device).",
                                  labels=["model", "device"])
        if engine is not None:
            model.add_metric([str(engine.name), str(engine.device)], 1)
        else:
            model.add_metric(["", ""], 0)
        yield model

        stats = gpu.memory_stats(engine.device if engine is not None else None)  # the model's card
        labels = ["device"]
        for name, doc, value in (
            ("asr_gpu_allocated_bytes", "GPU memory torch has handed out to tensors (this process).", stats.allocated),
            ("asr_gpu_reserved_bytes", "GPU memory torch's caching allocator holds (this process).", stats.reserved),
            ("asr_gpu_peak_allocated_bytes", "Most GPU memory torch has had allocated at once.", stats.peak),
            ("asr_gpu_process_bytes", "GPU memory this process holds, every allocator included (NVML).",
             stats.process_used),
            ("asr_gpu_device_used_bytes", "GPU memory in use on the card by every process (NVML).", stats.nvml_used),
            ("asr_gpu_device_free_bytes", "Free GPU memory on the card.", stats.free),
            ("asr_gpu_device_total_bytes", "The card's GPU memory.", stats.total),
        ):
            if value is None:
                continue  # NVML could not say: the series is absent rather than a false zero
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric([stats.device], value)
            yield family


def build_registry(queue: JobQueue) -> CollectorRegistry:
    """A registry of our own (never the global one) with every collector /metrics shows."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(queue))
    registry.register(EngineCollector())
    ProcessCollector(registry=registry)  # process_resident_memory_bytes (host RSS) etc., on Linux
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


# --- the System tab's chart ----------------------------------------------------------------

def host_rss_bytes() -> int | None:
    """This process's resident memory now (Linux /proc), None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Sample:
    time: float                  # epoch seconds
    queue_depth: int             # waiting plus running
    host_rss: int | None         # bytes
    gpu_process: int | None      # bytes this process holds on the GPU (NVML, else torch's reserved); 0 on the CPU
    gpu_device_used: int | None  # bytes used on the card by every process (NVML); None without it


def take_sample(queue: JobQueue) -> Sample:
    try:
        stats = gpu.memory_stats()
        process = stats.process_used if stats.process_used is not None else stats.reserved
        used = stats.nvml_used
    except Exception:  # a driver hiccup must not stop the sampler
        log.debug("GPU memory sample failed", exc_info=True)
        process = used = None
    return Sample(time.time(), queue.queue_length(), host_rss_bytes(), process, used)


class Ring:
    """The last `window` seconds of samples (bounded: at most window / every + 1 of them)."""

    def __init__(self, window: float = WINDOW_SECONDS, every: float = SAMPLE_SECONDS) -> None:
        self.window = window
        self._samples: deque[Sample] = deque(maxlen=int(window / every) + 1)
        self._lock = threading.Lock()

    def add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    def samples(self, now: float | None = None) -> list[Sample]:
        now = time.time() if now is None else now
        with self._lock:
            return [s for s in self._samples if now - s.time <= self.window]

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()


RING = Ring()  # the process's buffer: the server's sampler fills it, the System tab reads it


class Sampler:
    """A daemon thread: a sample into `ring` every `every` seconds (and the job tally brought
    up to date, so counters miss no job between scrapes)."""

    def __init__(self, queue: JobQueue, ring: Ring = RING, every: float = SAMPLE_SECONDS) -> None:
        self.queue, self.ring, self.every = queue, ring, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Sampler":
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def tick(self) -> None:
        self.ring.add(take_sample(self.queue))
        tally_for(self.queue).reconcile(self.queue)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("metrics sample failed")
            self._stop.wait(self.every)
