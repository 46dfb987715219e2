"""Kaldi log-mel filterbank features, as CAM++ was trained on: 80 bins, 25 ms frames every
10 ms, no dither, Povey window, pre-emphasis 0.97, input scaled to [-1, 1].

Vectorised in numpy over all frames at once (one FFT call for a whole speech span); checked
against kaldi-native-fbank in the tests, which it matches to float rounding. Per-window mean
normalisation happens in `embed`, where the windows are cut.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

SAMPLE_RATE = 16_000
FRAME_LENGTH = 400   # samples (25 ms)
FRAME_SHIFT = 160    # samples (10 ms)
FFT_SIZE = 512
NUM_BINS = 80
LOW_HZ = 20.0
PREEMPH = 0.97
_EPS = float(np.finfo(np.float32).eps)  # kaldi's log floor


def num_frames(samples: int) -> int:
    """Frames kaldi makes of `samples` samples (snip_edges: only whole frames)."""
    return 0 if samples < FRAME_LENGTH else 1 + (samples - FRAME_LENGTH) // FRAME_SHIFT


def fbank(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) float32 log-mel energies of a 16 kHz mono float array."""
    count = num_frames(audio.size)
    if count == 0:
        return np.zeros((0, NUM_BINS), np.float32)
    index = np.arange(FRAME_LENGTH)[None, :] + FRAME_SHIFT * np.arange(count)[:, None]
    frames = audio.astype(np.float32, copy=False)[index]
    frames = frames - frames.mean(axis=1, keepdims=True)                    # remove DC
    frames[:, 1:] -= PREEMPH * frames[:, :-1].copy()
    frames[:, 0] *= 1.0 - PREEMPH
    spectrum = scipy.fft.rfft(frames * _povey(), n=FFT_SIZE, axis=1)  # float32 FFT: ~4x numpy's
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    return np.log(np.maximum(power[:, : FFT_SIZE // 2] @ _mel_banks(), _EPS))


@lru_cache(maxsize=1)
def _povey() -> np.ndarray:
    n = np.arange(FRAME_LENGTH)
    return ((0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME_LENGTH - 1))) ** 0.85).astype(np.float32)


@lru_cache(maxsize=1)
def _mel_banks() -> np.ndarray:
    """(256, 80) triangular filters, equally spaced on kaldi's mel scale (Nyquist bin unused)."""
    def mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)

    edges = np.linspace(mel(LOW_HZ), mel(SAMPLE_RATE / 2), NUM_BINS + 2)
    bins = mel(np.arange(FFT_SIZE // 2) * SAMPLE_RATE / FFT_SIZE)[:, None]
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    up = (bins - left) / (centre - left)
    down = (right - bins) / (right - centre)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)
