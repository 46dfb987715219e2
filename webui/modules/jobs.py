"""The one-at-a-time job queue shared by the web tabs and the HTTP API.

One worker thread takes jobs in submission order and runs `pipeline.transcribe` on each, so
the GPU only ever holds one job's batches. Every job's state (place in the queue, stage,
percent, ETA, segments finished so far, final transcript or error) is readable by id from any
thread; `cancel()` removes a waiting job or stops a running one at its next batch boundary.
Every accepted job is recorded in History (through job_records): created on submit, then
running with its checkpoint, then done, failed or cancelled. A file that cannot be read is refused at submit (InputError) and never
reaches History. The worker survives any exception a job raises.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from . import audio as audio_mod
from . import pipeline, voice_profiles
from .audio import InputError
from .engines import EngineError, get_engine
from .engines.base import Engine, EngineSettings
from .events import Cancelled, Event, run_warnings
from .vads import voice_check
from .history import History
from .job_records import JobRecords
from .job_state import (CANCELLED, DONE, FAILED, FINAL, HISTORY_WARNING, QUEUED, RUNNING, Job, JobState, LimitError,
                        Limits, check_limits, model_label, partial_transcript)
from .options import PipelineOptions
from .transcript import Transcript

log = logging.getLogger(__name__)

EngineFactory = Callable[[EngineSettings], Engine]
TranscribeFn = Callable[..., Iterator[Event]]


class JobQueue:
    """Jobs run one at a time, in submission order, on a single worker thread."""

    def __init__(
        self,
        history: History | None = None,
        engine_factory: EngineFactory = get_engine,
        transcribe_fn: TranscribeFn = pipeline.transcribe,
        keep_finished: int = 500,
    ) -> None:
        self.history = history
        self.records = JobRecords(history) if history is not None else None
        self.limits = Limits()  # the server sets the operator's
        self._engine_factory = engine_factory
        self._transcribe = transcribe_fn
        self._keep_finished = keep_finished
        self._lock = threading.Lock()
        self._submit_lock = threading.Lock()  # taken before _lock, never inside it
        self._wakeup = threading.Condition(self._lock)
        self._pending: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._running: Job | None = None
        self._ids = itertools.count(1)
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._suspending = False  # stopping for a restart: unfinished jobs stay unfinished in History
        # Held while a job runs; unload_model takes it so it never pulls a model from under a job.
        self.gpu_lock = threading.Lock()
        self._seconds_per_audio_second: float | None = None  # measured speed, for waiting ETAs

    # --- submitting and reading ------------------------------------------------------

    def submit(self, path: str | Path, options: PipelineOptions = PipelineOptions(), owner: str = "",
               group: str = "", name: str | None = None, history_id: int | None = None) -> str:
        """Queue a file and return the job id. Raises InputError at once for a file that cannot
        be read (nothing is queued or recorded then). `history_id`: a job History already holds
        (resumed after a restart), so no new row is made."""
        info = audio_mod.probe(path)
        file_name = name or Path(path).name
        if history_id is None:  # a resumed job keeps the profiles it was queued with (its stored options)
            options = self._with_profiles(options, owner)
        # One submit at a time from the limit check to the queue: two submits of one user cannot
        # both pass the limit, and a shutdown cannot fall between the History row and the queue
        # (a refused submit would leave a row that the next start runs).
        with self._submit_lock:
            with self._lock:
                if self._stopping:
                    raise RuntimeError("the job queue is shut down")
                owner_jobs = sum(1 for j in self._jobs.values() if j.owner == owner and j.status in (QUEUED, RUNNING))
            if history_id is None:  # a resumed job was accepted before
                check_limits(self.limits, file_name, float(info.duration), owner_jobs)
            job = Job(
                id=f"{next(self._ids)}-{int(time.time() * 1000) % 100_000_000:08d}",
                path=str(path), file_name=file_name, options=options, owner=owner, group=group,
                duration=float(info.duration), model=model_label(options), history_id=history_id,
            )
            if self.records is not None and history_id is None:
                job.history_id = self.records.create(job)
                if job.history_id is None:
                    job.warnings.append(HISTORY_WARNING)
            with self._wakeup:
                self._jobs[job.id] = job
                self._pending.append(job)
                self._prune_locked()
                self._ensure_worker_locked()
                self._wakeup.notify_all()
        return job.id

    def _with_profiles(self, options: PipelineOptions, owner: str) -> PipelineOptions:
        """A diarizing job looks for its owner's voice profiles too (names given with the request,
        the API's reference clips, come first). Profiles that cannot be read are only logged."""
        if options.diarize is None or self.history is None:
            return options
        try:
            profiles = voice_profiles.known_speakers(self.history.path, owner)
        except Exception:
            log.exception("could not read the voice profiles of %r; the job runs without them", owner)
            return options
        given = {k.name.casefold() for k in options.diarize.known}
        known = options.diarize.known + tuple(p for p in profiles if p.name.casefold() not in given)
        return replace(options, diarize=replace(options.diarize, known=known))

    def get(self, job_id: str) -> JobState | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return self._snapshot_locked(job) if job else None

    def jobs(self, owner: str | None = None, group: str | None = None) -> list[JobState]:
        """Known jobs in submission order, optionally only one owner's or one group's."""
        with self._lock:
            return [self._snapshot_locked(j) for j in self._jobs.values()
                    if (owner is None or j.owner == owner) and (group is None or j.group == group)]

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.05) -> JobState:
        """Block until the job has finished (or `timeout` passes); returns its last state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.get(job_id)
            if state is None:
                raise KeyError(f"no job {job_id!r}")
            if state.finished or (deadline is not None and time.monotonic() >= deadline):
                return state
            time.sleep(poll)

    def queue_length(self) -> int:
        """Jobs waiting plus the one running."""
        with self._lock:
            return len(self._pending) + (1 if self._running else 0)

    def waiting(self) -> int:
        with self._lock:
            return len(self._pending)

    def busy(self) -> bool:
        with self._lock:
            return self._running is not None

    # --- cancelling ------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Waiting: removed from the queue. Running: stopped at the next batch boundary (its
        finished segments are kept as a partial transcript). False if already finished/unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in FINAL:
                return False
            if job.status == RUNNING:
                job.cancel.set()
                job.message = "cancelling…"
                return True
            self._pending.remove(job)
            job.cancel.set()
            job.status = job.stage = CANCELLED
            job.message = job.error = "cancelled before it started"
            job.finished_at = time.time()
        self._record(job, CANCELLED, job.error, None)
        return True

    def unfinished_history_ids(self) -> set[int]:
        """History rows this queue still writes to (its jobs waiting or running)."""
        with self._lock:
            return {j.history_id for j in self._jobs.values() if j.history_id is not None and j.status not in FINAL}

    def cancel_history_job(self, history_id: int) -> str | None:
        """Cancel the job writing to History row `history_id`; its new status, or None if no
        unfinished job of this queue has that row."""
        with self._lock:
            job = next((j for j in self._jobs.values() if j.history_id == history_id and j.status not in FINAL), None)
        if job is None or not self.cancel(job.id):
            return None
        with self._lock:
            return job.status

    def cancel_group(self, group: str) -> int:
        return sum(self.cancel(s.id) for s in self.jobs(group=group) if not s.finished)

    # --- model housekeeping ----------------------------------------------------------

    def unload_model(self, unload: Callable[[], bool] | None = None) -> tuple[bool, str]:
        """Free the loaded model unless a job is using it right now."""
        from .engines import unload_engine

        if not self.gpu_lock.acquire(blocking=False):
            return False, "A job is running; the model stays loaded. Try again when the queue is idle."
        try:
            freed = (unload or unload_engine)()
        finally:
            self.gpu_lock.release()
        return freed, "Model unloaded." if freed else "No model was loaded."

    def resume_unfinished(self) -> int:
        """Queue again the jobs a stopped process left queued or running (in History); each one
        skips the windows its checkpoint holds. A file that is gone ends its job as failed,
        keeping whatever text the checkpoint had. Returns how many were queued."""
        if self.records is None:
            return 0
        queued = 0
        for record, options in self.records.unfinished():
            try:
                self.submit(record.file_path, options, owner=record.owner, name=record.file_name,
                            history_id=record.id)
                queued += 1
            except InputError as exc:
                self.records.fail_unresumable(record, exc.reason)
        return queued

    def deep_cleanup(self) -> tuple[object, str]:
        """Return cached GPU memory to the driver; the loaded model's own caches too, unless a
        job is using it right now (then torch's cache only, and the peak counters stay: the job
        may be loading a model, whose calibration measures them). Returns (gpu.CleanupReport, note)."""
        from . import gpu as gpu_mod  # torch: imported only when asked
        from .engines import loaded_engine

        if not self.gpu_lock.acquire(blocking=False):
            return (gpu_mod.deep_cleanup(reset_peaks=False),
                    "A job is running: the model's own cache and the peak counters were left alone.")
        try:
            engine = loaded_engine()
            report = gpu_mod.deep_cleanup(getattr(engine, "trim", None), device=getattr(engine, "device", None))
            return report, report.note
        finally:
            self.gpu_lock.release()

    def shutdown(self, timeout: float = 5.0, keep_unfinished: bool = False) -> None:
        """Stop the worker. Tests cancel everything; a server stopping keeps its unfinished jobs
        as they are in History (`keep_unfinished`), so the next start resumes them."""
        with self._submit_lock, self._wakeup:  # a submit under way completes first, or is refused
            self._stopping = True
            self._suspending = keep_unfinished
            pending = list(self._pending)
            running = self._running
            if keep_unfinished:
                self._pending.clear()
            self._wakeup.notify_all()
        if not keep_unfinished:
            for job in pending:
                self.cancel(job.id)
        if running is not None:
            running.cancel.set()
        if self._worker is not None:
            self._worker.join(timeout)

    # --- the worker ------------------------------------------------------------------

    def _ensure_worker_locked(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="transcription-worker", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if self._stopping and not self._pending:
                    voice_check.release()  # the VAD's Silero session goes with the worker
                    return
                job = self._pending.popleft()
                job.status = RUNNING
                job.stage = "loading"
                job.message = "loading the model"
                job.started_at = time.time()
                self._running = job
            try:
                with self.gpu_lock:
                    self._run(job)
            except BaseException:  # never let one job take the worker down
                log.exception("job %s crashed the runner", job.id)
                if job.status not in FINAL:
                    self._finish(job, FAILED, "internal error (see the server log)")
            finally:
                with self._lock:
                    self._running = None

    def _run(self, job: Job) -> None:
        if self.records is not None and job.history_id is not None:
            self.records.mark_running(job.history_id)
        engine: Engine | None = None
        try:
            if job.cancel.is_set():
                raise Cancelled(Transcript(file=job.file_name, duration=job.duration, model=job.model))
            engine = self._engine_factory(job.options.engine)
            for event in self._events(job, engine):
                with self._lock:
                    job.apply(event)
            with self._lock:
                if job.transcript is None:
                    raise RuntimeError("the pipeline ended without a result")
        except Cancelled as exc:
            if self._suspending:
                return  # stopped for a restart: History keeps the job unfinished, with its checkpoint
            self._finish(job, CANCELLED, "cancelled by user", exc.partial)
        except InputError as exc:
            self._finish(job, FAILED, f"Cannot transcribe {job.file_name}: {exc.reason}")
        except EngineError as exc:
            self._finish(job, FAILED, f"Model problem: {exc}")
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self._finish(job, FAILED, f"Unexpected error ({type(exc).__name__}): {exc}")
        else:
            self._finish(job, DONE, "")
        finally:
            if engine is not None:
                try:
                    engine.release()
                except Exception:
                    log.exception("engine.release failed after job %s", job.id)

    def _events(self, job: Job, engine: Engine) -> Iterator[Event]:
        if self.records is None or job.history_id is None:
            return self._transcribe(job.path, job.options, engine=engine, cancel=job.cancel)
        return self.records.events(job, self._transcribe, engine)

    def _finish(self, job: Job, status: str, error: str, transcript: Transcript | None = None) -> None:
        """History first, then the in-memory state: whoever sees the job finished finds it in History.
        A job that fails keeps the text it had finished, as a cancelled one does."""
        with self._lock:
            final = transcript if transcript is not None else job.transcript
            if final is None and job.segments:
                final = partial_transcript(job.file_name, job.duration, job.model, job.segments)
            if status == DONE and job.stats is not None:
                job.warnings.extend(run_warnings(job.stats))
        self._record(job, status, error or ("" if status == DONE else status), final)
        with self._lock:
            job.status = job.stage = status
            job.error = error
            job.finished_at = time.time()
            job.transcript = final
            if status == DONE:
                job.fraction = 1.0
                job.message = "done"
                if job.started_at is not None and job.duration > 0:
                    speed = (job.finished_at - job.started_at) / job.duration
                    old = self._seconds_per_audio_second
                    self._seconds_per_audio_second = speed if old is None else 0.5 * old + 0.5 * speed
            else:
                job.message = error
            if self._running is job:
                self._running = None

    def _record(self, job: Job, status: str, error: str, transcript: Transcript | None) -> None:
        if self.records is None or job.history_id is None:
            return
        if not self.records.store_end(job.history_id, status, error, transcript):
            with self._lock:
                if HISTORY_WARNING not in job.warnings:
                    job.warnings.append(HISTORY_WARNING)

    # --- snapshots -------------------------------------------------------------------

    def _snapshot_locked(self, job: Job) -> JobState:
        position = ahead = 0
        eta: float | None = None
        message = job.message
        if job.status == QUEUED:
            position = next(i for i, j in enumerate(self._pending, 1) if j is job)
            eta = self._wait_estimate_locked(job)
            ahead = position - 1 + (1 if self._running else 0)
            message = "next in line" if ahead == 0 else f"{ahead} job{'s' if ahead != 1 else ''} ahead"
        elif job.status == RUNNING:
            eta = job.running_eta(self._seconds_per_audio_second)
        return job.snapshot(position, ahead, eta, message)

    def _wait_estimate_locked(self, job: Job) -> float | None:
        """Seconds until this waiting job is done, from the speed of earlier jobs (None before any)."""
        speed = self._seconds_per_audio_second
        if speed is None:
            return None
        total = 0.0
        if self._running is not None:
            total += self._running.running_eta(self._seconds_per_audio_second) or 0.0
        for other in self._pending:
            total += other.duration * speed
            if other is job:
                break
        return total

    def _prune_locked(self) -> None:
        """Forget the oldest finished jobs beyond `keep_finished`, but never one of a group
        (batch) that still has jobs to run: its summary needs them all."""
        active = {j.group for j in self._jobs.values() if j.group and j.status not in FINAL}
        finished = [j for j in self._jobs.values() if j.status in FINAL]
        excess = len(finished) - self._keep_finished
        for old in [j for j in finished if j.group not in active][: max(0, excess)]:
            del self._jobs[old.id]


__all__ = [
    "JobQueue", "JobState", "Limits", "LimitError", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "FINAL", "InputError", "EngineError",
]
