"""What a transcription run reports as it goes (progress, the plan, each finished window, the
final result) and what a resumed run is given back (`Resume`)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Union

from .audio import AudioInfo
from .transcript import Segment, SegmentResult, Transcript


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
class Planned:
    """Everything before the model, fixed for the whole run (and for a resumed run)."""

    info: AudioInfo
    segments: tuple[Segment, ...]
    windows: tuple[tuple[int, int], ...]  # [first, last) indices into segments, in time order
    max_seconds: float
    probed_seconds: float = 0.0  # the length the container claims; more than `info.duration`: damaged


@dataclass(frozen=True)
class WindowCounts:
    segments: int = 0       # planned segments finished
    skipped: int = 0        # of which held no speech
    batches: int = 0
    second_passes: int = 0  # inputs run again because their text could not cover their speech


@dataclass(frozen=True)
class WindowDone:
    """A window's text is final: the unit that is checkpointed and never redone."""

    index: int
    results: tuple[SegmentResult, ...]
    language: str           # as known after this window (detected once, then kept)
    counts: WindowCounts
    speakers: dict | None = None  # its speaker embeddings when diarizing (diarize.WindowEmbeddings.to_dict)
    # each first-pass input's language and language ID, where the language was followed input by
    # input (engines/language_id.py): lanes.py judges a window started early by them; not checkpointed
    decided: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()


@dataclass(frozen=True)
class Resume:
    """What an interrupted run of the same file with the same options had finished."""

    plan: Planned
    done: tuple[WindowDone, ...]


@dataclass(frozen=True)
class RunStats:
    segments: int = 0
    skipped_silent: int = 0
    batches: int = 0
    second_passes: int = 0
    speech_seconds: float = 0.0
    max_segment_seconds: float = 0.0
    itn_fallbacks: int = 0   # pieces ITN could not normalise, kept as the model wrote them
    resumed_windows: int = 0  # windows taken from a checkpoint instead of run again
    missing_seconds: float = 0.0  # the file claims more audio than could be decoded (truncated, damaged)
    seconds_by_stage: dict = field(default_factory=dict)
    diarize_warning: str = ""  # why the transcript has no speaker labels although they were asked for
    wrote_nothing: bool = False  # the transcript is empty: no voice heard (silence, music, noise)


@dataclass(frozen=True)
class Finished:
    transcript: Transcript
    stats: RunStats


Event = Union[Progress, Planned, SegmentDone, WindowDone, Finished]


class Cancelled(Exception):
    """The caller's cancel event was set; `partial` holds what was finished."""

    def __init__(self, partial: Transcript):
        super().__init__("cancelled")
        self.partial = partial


class StageClock:
    """Wall seconds per stage, for the benchmark tables: `with clock("asr"): ...`."""

    def __init__(self):
        self._totals: dict[str, float] = {}
        self._lock = threading.Lock()  # windows side by side (lanes.py) time their stages at once

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self._totals[stage] = self._totals.get(stage, 0.0) + time.perf_counter() - started

    def totals(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self._totals.items()}


def run_warnings(stats: RunStats) -> list[str]:
    """What a finished run should tell the user although it succeeded."""
    notes = []
    if stats.missing_seconds:
        notes.append(f"The file ends {stats.missing_seconds:.0f} s before the length it claims: it looks truncated "
                     "or damaged; the transcript covers what could be decoded.")
    if stats.wrote_nothing:
        notes.append("No speech was heard in this recording (only silence, music or noise): the transcript is empty.")
    if stats.diarize_warning:
        notes.append(stats.diarize_warning)
    if stats.itn_fallbacks:
        notes.append(f"ITN left {stats.itn_fallbacks} piece(s) as spoken (wetext could not normalise them); "
                     "the raw text is complete.")
    return notes
