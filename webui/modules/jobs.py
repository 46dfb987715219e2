"""The one-at-a-time job queue shared by the web tabs and the HTTP API.

One worker thread takes jobs in submission order and runs `pipeline.transcribe` on each, so
the GPU only ever holds one job's batches. Every job's state (place in the queue, stage,
percent, ETA, segments finished so far, final transcript or error) is readable by id from any
thread; `cancel()` removes a waiting job or stops a running one at its next batch boundary.
Every accepted job is recorded in History: created on submit, then running, then done,
failed or cancelled. A file that cannot be read is refused at submit (InputError) and never
reaches History. The worker survives any exception a job raises.

Also here, because both the UI and tests need them without Gradio: the batch summary writers
(CSV, JSON, zip).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import threading
import time
import zipfile
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence


from . import audio as audio_mod
from . import pipeline
from .audio import InputError
from .engines import EngineError, get_engine
from .engines.whisper_ct2 import BUNDLED_NAME as BUNDLED_MODEL
from .engines.base import Engine, EngineSettings
from .history import History
from .pipeline import Cancelled, Finished, PipelineOptions, Progress, RunStats, SegmentDone
from .transcript import FORMATS, TimedText, Transcript, render

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)

# Share of the progress bar given to each stage; transcription takes the rest.
_LOAD_SHARE, _SCAN_SHARE, _ITN_SHARE = 0.02, 0.05, 0.03

MEDIA_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .wma .aif .aiff .amr .webm .mp4 .m4v .mkv .mov .avi .mpg .mpeg .ts".split()
)


@dataclass(frozen=True)
class JobState:
    """A snapshot of one job; safe to keep and read from any thread."""

    id: str
    file_name: str
    path: str
    owner: str
    group: str
    status: str                      # queued | running | done | failed | cancelled
    position: int                    # 1-based place among waiting jobs; 0 once it runs
    ahead: int                       # jobs that run before this one (the running one included)
    stage: str                       # queued | loading | scan | transcribe | itn | done | failed | cancelled
    percent: float                   # 0..100 over the whole job
    eta_seconds: float | None        # running: from the progress rate; waiting: from past jobs' speed
    message: str
    duration: float                  # of the recording, seconds
    segments: tuple[TimedText, ...]  # text finished so far, in time order
    segments_done: int
    segments_total: int
    transcript: Transcript | None    # final (done) or partial (cancelled)
    error: str
    history_id: int | None
    model: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    stats: RunStats | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at


@dataclass
class _Job:
    id: str
    path: str
    file_name: str
    options: PipelineOptions
    owner: str
    group: str
    duration: float
    model: str
    created_at: float = field(default_factory=time.time)
    status: str = QUEUED
    stage: str = QUEUED
    fraction: float = 0.0
    message: str = ""
    segments: list[TimedText] = field(default_factory=list)
    segments_done: int = 0
    segments_total: int = 0
    transcript: Transcript | None = None
    error: str = ""
    history_id: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    transcribe_started: float | None = None  # when the model started on the audio
    transcribed_seconds: float = 0.0
    stats: RunStats | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


EngineFactory = Callable[[EngineSettings], Engine]
TranscribeFn = Callable[..., Iterator[pipeline.Event]]


def model_label(options: PipelineOptions) -> str:
    return options.engine.model or BUNDLED_MODEL


def options_record(options: PipelineOptions) -> dict:
    """The settings stored with a job in History (JSON-safe)."""
    return json.loads(json.dumps(asdict(options), default=str))


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
        self._engine_factory = engine_factory
        self._transcribe = transcribe_fn
        self._keep_finished = keep_finished
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._pending: deque[_Job] = deque()
        self._jobs: dict[str, _Job] = {}
        self._running: _Job | None = None
        self._ids = itertools.count(1)
        self._worker: threading.Thread | None = None
        self._stopping = False
        # Held while a job runs; unload_model takes it so it never pulls a model from under a job.
        self.gpu_lock = threading.Lock()
        self._seconds_per_audio_second: float | None = None  # measured speed, for waiting ETAs

    # --- submitting and reading ------------------------------------------------------

    def submit(self, path: str | Path, options: PipelineOptions = PipelineOptions(), owner: str = "",
               group: str = "", name: str | None = None) -> str:
        """Queue a file and return the job id. Raises InputError at once for a file that cannot
        be read (nothing is queued or recorded then)."""
        info = audio_mod.probe(path)
        file_name = name or Path(path).name
        job = _Job(
            id=f"{next(self._ids)}-{int(time.time() * 1000) % 100_000_000:08d}",
            path=str(path), file_name=file_name, options=options, owner=owner, group=group,
            duration=float(info.duration), model=model_label(options),
        )
        if self.history is not None:
            try:
                job.history_id = self.history.create_job(file_name, str(path), job.model, options_record(options))
            except Exception:  # the job still runs; History trouble is logged, not fatal
                log.exception("could not record job %s in history", job.id)
        with self._wakeup:
            if self._stopping:
                raise RuntimeError("the job queue is shut down")
            self._jobs[job.id] = job
            self._pending.append(job)
            self._prune_locked()
            self._ensure_worker_locked()
            self._wakeup.notify_all()
        return job.id

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

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the worker (tests and server exit)."""
        with self._wakeup:
            self._stopping = True
            pending = list(self._pending)
            running = self._running
            self._wakeup.notify_all()
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

    def _run(self, job: _Job) -> None:
        if self.history is not None and job.history_id is not None:
            try:
                self.history.mark_running(job.history_id)
            except Exception:
                log.exception("could not mark job %s running in history", job.id)
        engine: Engine | None = None
        try:
            if job.cancel.is_set():
                raise Cancelled(Transcript(file=job.file_name, duration=job.duration, model=job.model))
            engine = self._engine_factory(job.options.engine)
            for event in self._transcribe(job.path, job.options, engine=engine, cancel=job.cancel):
                self._apply(job, event)
            with self._lock:
                if job.transcript is None:
                    raise RuntimeError("the pipeline ended without a result")
        except Cancelled as exc:
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

    def _apply(self, job: _Job, event: pipeline.Event) -> None:
        now = time.time()
        with self._lock:
            if isinstance(event, Progress):
                job.stage = event.stage
                if event.stage == "scan":
                    job.fraction = max(job.fraction, _LOAD_SHARE + _SCAN_SHARE * (event.done / (event.total or 1)))
                    job.message = event.message or "finding silences"
                    if event.done >= event.total:
                        job.transcribe_started = now
                        job.stage = "transcribe"
                elif event.stage == "transcribe":
                    job.transcribed_seconds = max(job.transcribed_seconds, float(event.done))
                    job.fraction = max(job.fraction, self._transcribe_fraction(job))
                elif event.stage == "itn":
                    job.fraction = max(job.fraction, 1.0 - _ITN_SHARE)
                    job.message = "normalising text"
            elif isinstance(event, SegmentDone):
                job.segments.extend(event.result.pieces)
                job.segments_done, job.segments_total = event.done, event.total
                job.transcribed_seconds = max(job.transcribed_seconds, event.result.segment.end)
                job.fraction = max(job.fraction, self._transcribe_fraction(job))
                job.stage = "transcribe"
                job.message = f"segment {event.done} of {event.total}"
            elif isinstance(event, Finished):
                job.transcript = event.transcript
                job.stats = event.stats
                job.segments = list(event.transcript.segments)

    @staticmethod
    def _transcribe_fraction(job: _Job) -> float:
        share = 1.0 - _LOAD_SHARE - _SCAN_SHARE - _ITN_SHARE
        done = min(1.0, job.transcribed_seconds / job.duration) if job.duration > 0 else 0.0
        return _LOAD_SHARE + _SCAN_SHARE + share * done

    def _finish(self, job: _Job, status: str, error: str, transcript: Transcript | None = None) -> None:
        """History first, then the in-memory state: whoever sees the job finished finds it in History."""
        with self._lock:
            final = transcript if transcript is not None else job.transcript
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

    def _record(self, job: _Job, status: str, error: str, transcript: Transcript | None) -> None:
        if self.history is None or job.history_id is None:
            return
        try:
            if status == DONE and transcript is not None:
                self.history.finish_job(job.history_id, transcript)
            elif status == CANCELLED and transcript is not None and transcript.segments:
                # What was finished before the cancel is kept, not thrown away.
                self.history.finish_job(job.history_id, transcript, status=CANCELLED, error=error)
            elif status in (FAILED, CANCELLED):
                self.history.fail_job(job.history_id, error, status=status)
        except Exception:
            log.exception("could not record the end of job %s in history", job.id)

    # --- snapshots -------------------------------------------------------------------

    def _snapshot_locked(self, job: _Job) -> JobState:
        position = ahead = 0
        eta: float | None = None
        message = job.message
        if job.status == QUEUED:
            position = next(i for i, j in enumerate(self._pending, 1) if j is job)
            eta = self._wait_estimate_locked(job)
            ahead = position - 1 + (1 if self._running else 0)
            message = "next in line" if ahead == 0 else f"{ahead} job{'s' if ahead != 1 else ''} ahead"
        elif job.status == RUNNING:
            eta = self._running_eta(job)
        return JobState(
            id=job.id, file_name=job.file_name, path=job.path, owner=job.owner, group=job.group,
            status=job.status, position=position, ahead=ahead, stage=job.stage, percent=round(100.0 * job.fraction, 1),
            eta_seconds=None if eta is None else round(eta, 1), message=message, duration=job.duration,
            segments=tuple(job.segments), segments_done=job.segments_done, segments_total=job.segments_total,
            transcript=job.transcript, error=job.error, history_id=job.history_id, model=job.model,
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at, stats=job.stats,
        )

    def _running_eta(self, job: _Job) -> float | None:
        """Remaining seconds from the rate audio has been transcribed so far."""
        if job.transcribe_started is not None and job.transcribed_seconds > 0 and job.duration > 0:
            rate = job.transcribed_seconds / max(1e-6, time.time() - job.transcribe_started)
            return max(0.0, (job.duration - job.transcribed_seconds) / rate)
        if self._seconds_per_audio_second is not None and job.started_at is not None:
            return max(0.0, job.duration * self._seconds_per_audio_second - (time.time() - job.started_at))
        return None

    def _wait_estimate_locked(self, job: _Job) -> float | None:
        """Seconds until this waiting job is done, from the speed of earlier jobs (None before any)."""
        speed = self._seconds_per_audio_second
        if speed is None:
            return None
        total = 0.0
        if self._running is not None:
            total += self._running_eta(self._running) or 0.0
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


# --- outputs -----------------------------------------------------------------------------


def safe_stem(name: str) -> str:
    stem = Path(name).stem or "transcript"
    cleaned = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in stem).strip(" .")
    return cleaned or "transcript"


def write_transcript_files(transcript: Transcript, out_dir: Path, stem: str,
                           formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    """The transcript in each format as `<out_dir>/<stem>.<fmt>`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for fmt in formats:
        path = out_dir / f"{safe_stem(stem)}.{fmt}"
        path.write_text(render(transcript, fmt), encoding="utf-8")
        paths[fmt] = path
    return paths


SUMMARY_FIELDS = ("file", "status", "duration_s", "processing_s", "model", "language", "characters",
                  "history_id", "error")


def summary_rows(states: Iterable[JobState]) -> list[dict]:
    rows = []
    for s in states:
        t = s.transcript if s.status == DONE else None
        rows.append({
            "file": s.file_name, "status": s.status, "duration_s": round(s.duration, 2),
            "processing_s": round(s.elapsed, 2) if s.started_at else None,
            "model": (t.model if t else s.model), "language": (t.language if t else ""),
            "characters": len((t.text_itn or t.text) if t else ""),
            "history_id": s.history_id, "error": s.error,
        })
    return rows


def write_batch_outputs(states: Sequence[JobState], out_dir: Path, extra_rows: Sequence[dict] = ()) -> dict[str, Path]:
    """summary.csv, summary.json and transcripts.zip (every finished transcript in every format).
    `extra_rows` are files refused before queueing (name, error), so the summary lists them too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(states) + [{**{k: None for k in SUMMARY_FIELDS}, "status": FAILED, **r} for r in extra_rows]
    csv_path = out_dir / "summary.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    json_path = out_dir / "summary.json"
    json_path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    zip_path = out_dir / "transcripts.zip"
    used: set[str] = set()
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for s in states:
            if s.status != DONE or s.transcript is None:
                continue
            stem = safe_stem(s.file_name)
            unique, n = stem, 2
            while unique in used:
                unique, n = f"{stem}_{n}", n + 1
            used.add(unique)
            for fmt in FORMATS:
                archive.writestr(f"{unique}.{fmt}", render(s.transcript, fmt))
        archive.writestr("summary.csv", csv_path.read_text(encoding="utf-8"))
    return {"csv": csv_path, "json": json_path, "zip": zip_path}


def list_media(folder: Path) -> list[Path]:
    """Audio and video files directly inside `folder`, by name."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS),
                  key=lambda p: p.name.lower())


__all__ = [
    "JobQueue", "JobState", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "FINAL", "InputError",
    "EngineError", "write_transcript_files", "write_batch_outputs", "summary_rows", "list_media",
    "safe_stem",
]
