"""What every VAD backend shares: its options, its output types and the `VadBackend` protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


Region = tuple[float, float]  # (start, end) seconds inside the audio given to the backend


@dataclass(frozen=True)
class VadOptions:
    backend: str = "librosa"      # librosa (fast, CPU) | fsmn-vad | silero-vad (model VADs)
    top_db: float = 25.0
    frame_length: int = 2048
    hop_length: int = 512
    min_speech: float = 0.25      # shorter bursts are clicks and breaths, not words
    keep_gap: float = 0.6         # longer pauses are shortened to this (room for the model timing)
    pad: float = 0.1              # context kept around each speech span
    floor_db: float = -55.0       # a segment quieter than this (dBFS peak) has no speech
    # top_db is relative to the segment's loudest frame, so a segment of pure room noise would
    # count as all speech; the reference never drops below this (frame RMS, dBFS), so frames
    # quieter than ref_floor_db - top_db (-60 dBFS) are always silence.
    ref_floor_db: float = -35.0
    # A quiet voice next to a loud one (librosa backend): where the sound within local_window
    # seconds stands local_margin_db above the segment's noise floor, top_db is measured from
    # that local loudest frame, at most local_depth_db below the segment's loudest (0: off).
    local_window: float = 1.5
    local_margin_db: float = 10.0
    local_depth_db: float = 15.0
    # librosa backend: Silero takes the stretches where it hears no voice (music, a hold tune)
    # out of the energy regions (voice_check.py)
    voice_check: bool = True


@dataclass(frozen=True)
class SpeechSpan:
    start: float  # absolute seconds
    end: float


class VadBackend(Protocol):
    def __call__(self, audio: np.ndarray, opts: VadOptions) -> list[Region]:
        """Speech regions (seconds) of a 16 kHz mono float32 array."""


def mono(audio: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
