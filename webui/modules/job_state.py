"""A job's record and its snapshot: status, the audio done of the total, the ETA from this job's
own rate (progress.EtaEstimator), the text so far (final lines, and each batch's lines as a
preview until their window is final)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace

from .engines.bundled import BUNDLED_NAME as BUNDLED_MODEL
from .events import Event, Finished, Progress, RunStats, SegmentDone, WindowDone
from .options import PipelineOptions
from .progress import EtaEstimator
from .script import to_script
from .transcript import TimedText, Transcript, join_texts
from .windows import BatchLines

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)

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
    percent: float                   # 0..100: the audio transcribed, of the recording
    eta_seconds: float | None        # running: from this job's rate; waiting: from past jobs' speed
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
    audio_done: float = 0.0          # seconds of the recording transcribed so far
    preview: tuple[TimedText, ...] = ()  # lines of finished batches whose window is not final yet
    prior_seconds: float = 0.0       # work before a restart (a resumed job)

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def elapsed(self) -> float:
        """Wall seconds of work on the job, across restarts."""
        if self.started_at is None:
            return self.prior_seconds
        return self.prior_seconds + (self.finished_at or time.time()) - self.started_at

    @property
    def lines(self) -> list[TimedText]:
        """The text so far in time order: final lines and the preview of running batches."""
        return sorted((*self.segments, *self.preview), key=lambda p: (p.start, p.end))


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
    prior_seconds: float = 0.0   # work before a restart, from the checkpoint (job_records)
    working: bool = False        # the model has reported progress in this run (replay is over)
    preview: dict[int, list[TimedText]] = field(default_factory=dict)  # window -> lines of its batches
    meter: EtaEstimator = field(init=False)

    def __post_init__(self) -> None:
        self.meter = EtaEstimator(self.duration)

    def work_seconds(self) -> float:
        """Seconds of work on the job so far, across restarts (kept in its checkpoint)."""
        return self.prior_seconds + (time.time() - self.started_at if self.started_at else 0.0)

    def _script(self, pieces, language: str) -> list[TimedText]:
        texts = to_script([p.text for p in pieces], language or self.options.engine.language, self.options.script)
        return [replace(p, text=t) for p, t in zip(pieces, texts)]

    def apply(self, event: Event) -> None:
        """Fold a pipeline event into the job (the caller holds the queue's lock)."""
        if isinstance(event, Progress):
            self.stage = event.stage
            if event.stage == "scan":
                self.message = event.message or "finding silences"
                if event.done >= event.total:
                    self.transcribe_started = time.time()
                    self.stage = "transcribe"
                    self.meter.begin(self.transcribed_seconds)
            elif event.stage == "transcribe":
                self.working = True
                self._advance(float(event.done))
            elif event.stage == "itn":
                self._advance(self.duration)
                self.message = "normalising text"
        elif isinstance(event, SegmentDone):  # live text in the chosen Chinese script, as the end result
            self.segments.extend(self._script(event.result.pieces, event.result.language))
            self.segments_done, self.segments_total = event.done, event.total
            if not self.working:  # replayed from a checkpoint: done before this run, in no time
                self._advance(event.result.segment.end)
                self.meter.begin(self.transcribed_seconds)
            self.stage = "transcribe"
        elif isinstance(event, BatchLines):  # a preview until its window is final
            preview = self.preview.setdefault(event.window, [])
            for result in event.results:
                preview.extend(self._script(result.pieces, result.language or event.language))
        elif isinstance(event, WindowDone):
            self.preview.pop(event.index, None)
        elif isinstance(event, Finished):
            self.transcript = event.transcript
            self.stats = event.stats
            self.segments = list(event.transcript.segments)
            self.preview.clear()

    def _advance(self, seconds: float) -> None:
        self.transcribed_seconds = max(self.transcribed_seconds, min(seconds, self.duration or seconds))
        self.fraction = max(self.fraction, self.transcribe_fraction())
        self.meter.advance(self.transcribed_seconds)

    def snapshot(self, position: int, ahead: int, eta: float | None, message: str) -> JobState:
        if self.status == RUNNING:
            eta = self.meter.eta()  # this job's own rate only (see progress.py)
        return JobState(
            id=self.id, file_name=self.file_name, path=self.path, owner=self.owner, group=self.group,
            status=self.status, position=position, ahead=ahead, stage=self.stage,
            percent=round(100.0 * self.fraction, 1), eta_seconds=None if eta is None else round(eta, 1),
            message=message, duration=self.duration, segments=tuple(self.segments),
            segments_done=self.segments_done, segments_total=self.segments_total, transcript=self.transcript,
            error=self.error, history_id=self.history_id, model=self.model, created_at=self.created_at,
            started_at=self.started_at, finished_at=self.finished_at, stats=self.stats, warnings=tuple(self.warnings),
            audio_done=round(self.transcribed_seconds, 1),
            preview=tuple(p for lines in self.preview.values() for p in lines), prior_seconds=self.prior_seconds,
        )

    def transcribe_fraction(self) -> float:
        """The share of the recording transcribed: the one measure of progress."""
        return min(1.0, self.transcribed_seconds / self.duration) if self.duration > 0 else 0.0

    def running_eta(self, seconds_per_audio_second: float | None) -> float | None:
        """Remaining seconds: from this job's own rate once it has one; until then, for the
        estimate of the jobs waiting behind it only, from the speed of earlier jobs."""
        eta = self.meter.eta()
        if eta is not None:
            return eta
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
