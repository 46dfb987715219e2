"""A job's record and its snapshot: status, progress share per stage, ETA from the rate so far."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace

from .engines.bundled import BUNDLED_NAME as BUNDLED_MODEL
from .events import Event, Finished, Progress, RunStats, SegmentDone
from .options import PipelineOptions
from .script import to_script
from .transcript import TimedText, Transcript, join_texts

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)

# Share of the progress bar given to each stage; transcription takes the rest.
_LOAD_SHARE, _SCAN_SHARE, _ITN_SHARE = 0.02, 0.05, 0.03

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
    warnings: tuple[str, ...] = ()   # the job went on, but the user should know (ITN, History)

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at


@dataclass
class Job:
    """A job's mutable record inside the queue."""

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
    warnings: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def apply(self, event: Event) -> None:
        """Fold a pipeline event into the job (the caller holds the queue's lock)."""
        if isinstance(event, Progress):
            self.stage = event.stage
            if event.stage == "scan":
                self.fraction = max(self.fraction, _LOAD_SHARE + _SCAN_SHARE * (event.done / (event.total or 1)))
                self.message = event.message or "finding silences"
                if event.done >= event.total:
                    self.transcribe_started = time.time()
                    self.stage = "transcribe"
            elif event.stage == "transcribe":
                self.transcribed_seconds = max(self.transcribed_seconds, float(event.done))
                self.fraction = max(self.fraction, self.transcribe_fraction())
            elif event.stage == "itn":
                self.fraction = max(self.fraction, 1.0 - _ITN_SHARE)
                self.message = "normalising text"
        elif isinstance(event, SegmentDone):  # live text in the chosen Chinese script, as the end result
            pieces = event.result.pieces
            texts = to_script([p.text for p in pieces], event.result.language or self.options.engine.language,
                              self.options.script)
            self.segments.extend(replace(p, text=t) for p, t in zip(pieces, texts))
            self.segments_done, self.segments_total = event.done, event.total
            self.transcribed_seconds = max(self.transcribed_seconds, event.result.segment.end)
            self.fraction = max(self.fraction, self.transcribe_fraction())
            self.stage = "transcribe"
            self.message = f"segment {event.done} of {event.total}"
        elif isinstance(event, Finished):
            self.transcript = event.transcript
            self.stats = event.stats
            self.segments = list(event.transcript.segments)

    def snapshot(self, position: int, ahead: int, eta: float | None, message: str) -> JobState:
        return JobState(
            id=self.id, file_name=self.file_name, path=self.path, owner=self.owner, group=self.group,
            status=self.status, position=position, ahead=ahead, stage=self.stage,
            percent=round(100.0 * self.fraction, 1), eta_seconds=None if eta is None else round(eta, 1),
            message=message, duration=self.duration, segments=tuple(self.segments),
            segments_done=self.segments_done, segments_total=self.segments_total, transcript=self.transcript,
            error=self.error, history_id=self.history_id, model=self.model, created_at=self.created_at,
            started_at=self.started_at, finished_at=self.finished_at, stats=self.stats, warnings=tuple(self.warnings),
        )

    def transcribe_fraction(self) -> float:
        share = 1.0 - _LOAD_SHARE - _SCAN_SHARE - _ITN_SHARE
        done = min(1.0, self.transcribed_seconds / self.duration) if self.duration > 0 else 0.0
        return _LOAD_SHARE + _SCAN_SHARE + share * done

    def running_eta(self, seconds_per_audio_second: float | None) -> float | None:
        """Remaining seconds from the rate audio has been transcribed so far (else from the
        speed of earlier jobs)."""
        if self.transcribe_started is not None and self.transcribed_seconds > 0 and self.duration > 0:
            rate = self.transcribed_seconds / max(1e-6, time.time() - self.transcribe_started)
            return max(0.0, (self.duration - self.transcribed_seconds) / rate)
        if seconds_per_audio_second is not None and self.started_at is not None:
            return max(0.0, self.duration * seconds_per_audio_second - (time.time() - self.started_at))
        return None


def model_label(options: PipelineOptions) -> str:
    return options.engine.model or BUNDLED_MODEL


def options_record(options: PipelineOptions) -> dict:
    """The settings stored with a job in History (JSON-safe)."""
    return json.loads(json.dumps(asdict(options), default=str))


def partial_transcript(file_name: str, duration: float, model: str, pieces) -> Transcript:
    """What a job that stopped early had finished, as a transcript (no ITN: it runs at the end)."""
    pieces = list(pieces)
    return Transcript(file=file_name, duration=duration, model=model, text=join_texts([p.text for p in pieces]),
                      segments=pieces)


HISTORY_WARNING = ("History could not be written (see the server log); the transcript is only on this page: "
                   "download it now.")


class LimitError(ValueError):
    """A job refused by one of the operator's limits; the message is meant for the user."""


@dataclass(frozen=True)
class Limits:
    max_audio_seconds: float = 12 * 3600.0
    max_jobs_per_owner: int = 20  # queued or running at once; 0: no limit


def check_limits(limits: Limits, file_name: str, duration: float, owner_jobs: int) -> None:
    """LimitError (one line for the user) when the recording is too long or its owner already
    has `owner_jobs` waiting or running at the limit."""
    if duration > limits.max_audio_seconds:
        raise LimitError(f"{file_name} is {duration / 3600:.1f} hours long; this server takes recordings "
                         f"of up to {limits.max_audio_seconds / 3600:g} hours.")
    if limits.max_jobs_per_owner and owner_jobs >= limits.max_jobs_per_owner:
        raise LimitError(f"You already have {owner_jobs} jobs waiting or running (the limit is "
                         f"{limits.max_jobs_per_owner}); wait for one to finish.")
