"""The fast default VAD: frame energy against a reference level, as librosa's split does,
with two changes for real recordings.

- The reference never drops below `ref_floor_db`, so a segment of pure room noise is not
  all speech (librosa's reference is the segment's loudest frame, whatever it is).
- Where the sound within `local_window` seconds stands well above the segment's noise floor,
  the reference is that local loudest frame, not the segment's: a quiet speaker answering a
  loud one is judged against their own voice, not dropped as silence. It goes down at most
  `local_depth_db` below the segment's loudest, never in a stretch of noise alone (there the
  local loudest is only the noise itself), and never so low that the noise floor itself would
  pass: pauses, hiss and a music bed stay silence.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE
from .base import Region, VadOptions
from .filters import block_sums, maximum_filter1d, uniform_filter1d

NOISE_WINDOW = 0.5     # seconds: the noise floor is the quietest stretch this long
DIGITAL_SILENCE = 1e-4  # frame RMS (-80 dBFS): zeros, not a room's noise floor


def regions(audio: np.ndarray, opts: VadOptions) -> list[Region]:
    if audio.size == 0:
        return []
    rms = frame_rms(audio, opts.frame_length, opts.hop_length)
    speech = rms > threshold(rms, opts)
    return [(lo / SAMPLE_RATE, min(hi, audio.size) / SAMPLE_RATE) for lo, hi in _runs(speech, opts.hop_length)]


def frame_rms(audio: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """librosa.feature.rms(y, frame_length, hop_length)[0] (centred frames, zero padding), in
    numpy alone: importing librosa costs more CPU than the VAD of an hour of audio."""
    padded = np.pad(audio, frame_length // 2)
    sums = block_sums(np.square(padded), frame_length, hop_length)  # O(n), not O(n * frame_length / hop)
    if sums is not None:
        return np.sqrt(sums / frame_length).astype(audio.dtype if audio.dtype.kind == "f" else np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]
    return np.sqrt(np.mean(np.square(frames), axis=1))


def threshold(rms: np.ndarray, opts: VadOptions) -> np.ndarray:
    """Per frame, the level above which a frame is speech."""
    loudest = max(float(rms.max()), _ratio(opts.ref_floor_db))
    usual = np.full_like(rms, loudest * _ratio(-opts.top_db))
    if opts.local_window <= 0 or opts.local_depth_db <= 0:
        return usual
    width = max(1, int(round(opts.local_window * SAMPLE_RATE / opts.hop_length)) | 1)  # odd: centred
    local = maximum_filter1d(rms, width)
    noise = noise_floor(rms, opts.hop_length)
    if noise is None:
        return usual
    above_noise = noise * _ratio(opts.local_margin_db)
    lowest = max(loudest * _ratio(-opts.local_depth_db), _ratio(opts.ref_floor_db))
    # Lowered only near sound that stands out, and never to within local_margin_db of the noise
    # floor: under a music bed or a hiss, the bed next to a word must not become speech.
    lowered = np.maximum(np.clip(local, lowest, loudest) * _ratio(-opts.top_db), above_noise)
    return np.where(local >= above_noise, np.minimum(lowered, usual), usual)


def noise_floor(rms: np.ndarray, hop_length: int) -> float | None:
    """The level of the quietest NOISE_WINDOW seconds (minimum statistics): the room between
    words. A low percentile of frames is not it: in dense speech a tenth of the frames are
    soft speech, 15 dB above the room, and soft words then fall under "noise + margin"."""
    width = max(1, int(round(NOISE_WINDOW * SAMPLE_RATE / hop_length)))
    # The running mean of squares can dip a hair below 0 in float arithmetic over exact zeros.
    power = uniform_filter1d(rms.astype(np.float64) ** 2, width)
    smoothed = np.sqrt(np.maximum(power, 0.0))
    heard = smoothed[smoothed >= DIGITAL_SILENCE]
    return float(heard.min()) if heard.size else None


def _ratio(db: float) -> float:
    return 10 ** (db / 20)


def _runs(mask: np.ndarray, hop: int) -> list[tuple[int, int]]:
    """(start, end) samples of each run of True frames (frame k is centred on sample k * hop)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return [(int(lo) * hop, int(hi) * hop) for lo, hi in edges.reshape(-1, 2)]
