"""Sliding-window filters in numpy alone, as scipy.ndimage's `mode="nearest"` versions compute
them (window centred like scipy's with origin 0). Importing scipy.ndimage costs about 0.25 s of
CPU at every start, more than the VAD of an hour of audio."""

from __future__ import annotations

import numpy as np


def _edge_padded(x: np.ndarray, size: int) -> np.ndarray:
    left = size // 2
    return np.pad(x, (left, size - 1 - left), mode="edge")


def maximum_filter1d(x: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage.maximum_filter1d(x, size, mode="nearest") in O(n) (van Herk/Gil-Werman:
    running maxima forward and backward inside blocks of `size`)."""
    x = np.asarray(x)
    if size <= 1 or x.size == 0:
        return x.copy()
    padded = _edge_padded(x, size)
    blocks = -(-padded.size // size)
    filled = np.pad(padded, (0, blocks * size - padded.size), mode="edge").reshape(blocks, size)
    forward = np.maximum.accumulate(filled, axis=1).reshape(-1)
    backward = np.maximum.accumulate(filled[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    starts = np.arange(x.size)
    return np.maximum(backward[starts], forward[starts + size - 1])


def uniform_filter1d(x: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage.uniform_filter1d(x, size, mode="nearest") for float64 input (running sums)."""
    x = np.asarray(x, dtype=np.float64)
    if size <= 1 or x.size == 0:
        return x.copy()
    sums = np.concatenate(([0.0], np.cumsum(_edge_padded(x, size))))
    return (sums[size:size + x.size] - sums[:x.size]) / size


def block_sums(x: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray | None:
    """Sum of each frame [i*hop, i*hop + frame_length) of `x` (float64), for frame lengths that
    are whole hops: per-hop sums first, then k of them per frame. None when not whole hops."""
    if frame_length % hop_length or x.size < frame_length:
        return None
    k = frame_length // hop_length
    frames = (x.size - frame_length) // hop_length + 1
    hops = frames + k - 1
    per_hop = x[:hops * hop_length].reshape(hops, hop_length).sum(axis=1, dtype=np.float64)
    running = np.concatenate(([0.0], np.cumsum(per_hop)))
    return running[k:k + frames] - running[:frames]
