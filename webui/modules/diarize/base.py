"""What the diarization stage passes around: options, per-window embeddings, speaker turns."""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .known import KnownSpeaker

SpanLike = tuple[float, float]  # (start, end) absolute seconds; a SpeechSpan also fits


def cpu_threads() -> int:
    """Threads for the stage's CPU work (network, BLAS, k-means): WEBUI_DIARIZE_THREADS, else 1.
    Measured on the 2-core machine this was built on, two threads were slower than one for
    everything here: bf16 torch 0.3 -> 0.6-6 s and ONNX 0.42 -> 0.64 s for 30 s of speech, and
    clustering a 150 min meeting 1.6 s -> 28 s (threads spinning against each other). One
    thread also leaves the other core to the transcription."""
    value = os.environ.get("WEBUI_DIARIZE_THREADS", "")
    return max(1, int(value)) if value.isdigit() else 1


@contextlib.contextmanager
def limited_threads() -> Iterator[None]:
    """numpy's BLAS (and any OpenMP pool) on cpu_threads() threads for the block."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # comes with scikit-learn; without it, the libraries' own defaults
        yield
        return
    with threadpool_limits(limits=cpu_threads()):
        yield


class DiarizationError(RuntimeError):
    """Diarization cannot run (weights missing or corrupt, bad options); the text says why."""


@dataclass(frozen=True)
class DiarizeOptions:
    num_speakers: int | None = None   # exact count; overrides min/max
    min_speakers: int | None = None
    max_speakers: int | None = None
    split_pass: bool = True           # look for minor speakers inside each cluster (long meetings)
    # Voices to name (the owner's profiles, the API's reference clips): a cluster that matches
    # one is labelled with its name. Stored with the job, so a resumed job names the same.
    known: tuple[KnownSpeaker, ...] = ()

    def __post_init__(self) -> None:
        # options_from_record hands back the stored JSON: a list of {"name", "vector"}
        known = tuple(k if isinstance(k, KnownSpeaker) else KnownSpeaker(str(k["name"]), str(k["vector"]))
                      for k in (self.known or ()))
        object.__setattr__(self, "known", known)

    def bounds(self, limit: int = 20) -> tuple[int, int]:
        """(lowest, highest) speaker count allowed; `limit` caps an open upper bound."""
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise DiarizationError(f"{name} must be a whole number of at least 1, not {value!r}")
        if self.num_speakers is not None:
            return int(self.num_speakers), int(self.num_speakers)
        low, high = self.min_speakers or 1, self.max_speakers or max(limit, self.min_speakers or 1)
        if low > high:
            raise DiarizationError(f"min_speakers ({low}) is above max_speakers ({high})")
        return int(low), int(high)


@dataclass(frozen=True)
class SpeakerTurn:
    start: float    # absolute seconds
    end: float
    speaker: int    # 0, 1, ... in order of first appearance

    @property
    def label(self) -> str:
        return f"SPEAKER_{self.speaker:02d}"


@dataclass(frozen=True, eq=False)
class WindowEmbeddings:
    """The speaker embeddings of one transcription window: all a checkpoint needs to keep.

    Row i of `vectors` describes the speech in `times[i]` = (start, end), absolute seconds;
    the rows are in time order and their intervals do not overlap. Vectors are unit length.
    """

    start: float
    end: float
    times: np.ndarray     # (n, 2) float64
    vectors: np.ndarray   # (n, dim) float16

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def to_dict(self) -> dict:
        """JSON-ready: times rounded to milliseconds, vectors as base64 float16."""
        return {
            "start": round(float(self.start), 3), "end": round(float(self.end), 3),
            "times": np.round(self.times, 3).tolist(),
            "dim": int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0,
            "vectors": base64.b64encode(np.ascontiguousarray(self.vectors, "<f2").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "WindowEmbeddings":
        try:
            times = np.asarray(data["times"], dtype=np.float64).reshape(-1, 2)
            raw = np.frombuffer(base64.b64decode(data["vectors"]), dtype="<f2")
            vectors = raw.reshape(times.shape[0], int(data["dim"]) if times.shape[0] else 0).astype(np.float16)
            return cls(float(data["start"]), float(data["end"]), times, vectors)
        except (KeyError, TypeError, ValueError) as exc:
            raise DiarizationError(f"stored window embeddings are unreadable: {exc}") from exc

    @classmethod
    def empty(cls, start: float, end: float, dim: int = 0) -> "WindowEmbeddings":
        return cls(start, end, np.zeros((0, 2)), np.zeros((0, dim), np.float16))


def stack(windows: Iterable[WindowEmbeddings]) -> tuple[np.ndarray, np.ndarray]:
    """All windows' (times, float32 vectors), in time order."""
    windows = [w for w in windows if len(w)]
    if not windows:
        return np.zeros((0, 2)), np.zeros((0, 0), np.float32)
    times = np.concatenate([w.times for w in windows])
    vectors = np.concatenate([w.vectors for w in windows]).astype(np.float32)
    order = np.argsort(times[:, 0], kind="stable")
    return times[order], vectors[order]
