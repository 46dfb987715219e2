"""What the job queue keeps in History: a job's row, its checkpoint as the run goes, its end
with whatever text it has, and the jobs a stopped process left unfinished. History trouble is
logged and reported back, never fatal: the transcript in memory must not be lost to it."""

from __future__ import annotations

import logging
from typing import Callable, Iterator

from . import checkpoint
from .engines.base import Engine
from .events import Event
from .history import History, JobRecord
from .job_state import DONE, FAILED, Job, options_record, partial_transcript
from .options import PipelineOptions, options_from_record
from .transcript import Transcript

log = logging.getLogger(__name__)


class JobRecords:
    def __init__(self, history: History) -> None:
        self.history = history

    def create(self, job: Job) -> int | None:
        try:
            return self.history.create_job(job.file_name, job.path, job.model, options_record(job.options),
                                           owner=job.owner)
        except Exception:  # the job still runs; History trouble is logged, not fatal
            log.exception("could not record job %s in history", job.id)
            return None

    def mark_running(self, history_id: int) -> None:
        try:
            self.history.mark_running(history_id)
        except Exception:
            log.exception("could not mark job %s running in history", history_id)

    def events(self, job: Job, transcribe: Callable[..., Iterator[Event]], engine: Engine) -> Iterator[Event]:
        """The pipeline's events for the job, resumed from and checkpointed to its History row."""
        resume = None
        try:
            head, windows = self.history.checkpoint(job.history_id)
            resume = checkpoint.resume_from(job.path, job.options, head, windows)
            if resume is not None:  # the work before the restart counts in the job's time
                job.prior_seconds = max([float(w.get("elapsed", 0.0)) for w in windows] + [0.0])
        except Exception:
            log.exception("could not read the checkpoint of job %s; starting afresh", job.id)
        extra = {"resume": resume} if resume is not None else {}
        events = transcribe(job.path, job.options, engine=engine, cancel=job.cancel, **extra)
        return checkpoint.persist(events, _Checkpoint(self.history, job.history_id, job.work_seconds), job.path,
                                  job.options, resuming=resume is not None)

    def store_end(self, history_id: int, status: str, error: str, transcript: Transcript | None) -> bool:
        """The job's end, with whatever text it has (a cancelled or failed job keeps what it
        finished); its checkpoint goes once that is stored. False if History failed."""
        try:
            if transcript is not None and (status == DONE or transcript.segments):
                self.history.finish_job(history_id, transcript, status=status, error=error)
            else:
                self.history.fail_job(history_id, error, status=FAILED if status == DONE else status)
            self.history.drop_checkpoint(history_id)
            return True
        except Exception:
            log.exception("could not record the end of job %s in history", history_id)
            return False

    def unfinished(self) -> list[tuple[JobRecord, PipelineOptions]]:
        """Jobs a stopped process left queued or running, with the options they were queued with."""
        return [(record, options_from_record(record.settings)) for record in self.history.unfinished()]

    def fail_unresumable(self, record: JobRecord, reason: str) -> None:
        """A stored job that cannot run again ends failed, keeping the text its checkpoint had."""
        pieces = checkpoint.stored_pieces(*self.history.checkpoint(record.id))
        partial = partial_transcript(record.file_name, record.duration or 0.0, record.model, pieces)
        self.store_end(record.id, FAILED, f"Cannot resume {record.file_name}: {reason}", partial)


class _Checkpoint:
    """checkpoint.Store over a History row; each window also keeps the job's seconds of work so
    far, so a resumed job's time covers the whole job."""

    def __init__(self, history: History, job_id: int, work_seconds: Callable[[], float] = lambda: 0.0) -> None:
        self.history, self.job_id, self.work_seconds = history, job_id, work_seconds

    def begin(self, head: dict) -> None:
        self.history.begin_checkpoint(self.job_id, head)

    def add(self, window: dict) -> None:
        self.history.add_checkpoint_window(self.job_id, {**window, "elapsed": round(self.work_seconds(), 1)})
