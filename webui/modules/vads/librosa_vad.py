"""The fast default VAD: librosa's energy split, with a floor so room noise is not speech."""

from __future__ import annotations

import librosa
import numpy as np

from ..audio import SAMPLE_RATE
from .base import Region, VadOptions


def regions(audio: np.ndarray, opts: VadOptions) -> list[Region]:
    floor = 10 ** (opts.ref_floor_db / 20)
    intervals = librosa.effects.split(
        audio, top_db=opts.top_db, frame_length=opts.frame_length, hop_length=opts.hop_length,
        ref=lambda rms: max(float(np.max(rms)), floor),
    )
    return [(lo / SAMPLE_RATE, hi / SAMPLE_RATE) for lo, hi in intervals]
