"""Speaker embeddings of one transcription window, computed only inside its speech spans.

The network is the expensive part, so each second of speech goes through it once: a span is
cut into 1.5 s chunks (the length CAM++ embeds well), the chunks of the whole window run as
one batch, and their frame maps are laid end to end. Embeddings are then pooled from that map
over 1.5 s windows every 0.5 s, which costs almost nothing: turns get a fine time grid without
the overlapping network passes of a sliding window (1.5 s every 0.75 s costs twice as much).

Tried and dropped: skipping chunks whose neighbours sound alike. At a threshold that kept the
AMI sample right (cosine 0.6) it saved only 5-10 % of the network time; at 0.4 it merged the
AMI speakers (DER 7 % -> 21 %): 1.5 s chunks of one voice are not alike enough to tell.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .base import SpanLike, WindowEmbeddings, limited_threads
from .encoder import Encoder, get_encoder
from .features import SAMPLE_RATE, fbank

CHUNK = 150              # feature frames (10 ms) per network pass
WINDOW = 75              # frame-map frames (20 ms) pooled into one embedding: 1.5 s
STEP = 25                # frame-map frames between embeddings: 0.5 s
MIN_SPAN = 0.3           # seconds: shorter speech spans get no embedding
MIN_FRAMES = 20          # frame-map frames: the least a pooled window may hold
PAUSE = 0.3              # seconds of quiet inside a span that count as a pause ...
PAUSE_DB = 30.0          # ... when this far below the span's loud frames
BATCH = 32               # chunks per network call
FRAME_SECONDS = 0.02     # one frame-map frame


def embed_window(samples: np.ndarray, start_time: float, speech_spans: Iterable[SpanLike | object],
                 device: str | None = "cpu", encoder: Encoder | None = None) -> WindowEmbeddings:
    """Embeddings of the speech in one window of audio (16 kHz mono float32) that starts at
    `start_time` seconds; `speech_spans` are absolute (start, end) pairs or SpeechSpans."""
    with limited_threads():
        return _embed(samples, start_time, speech_spans, device, encoder)


def _embed(samples, start_time: float, speech_spans, device: str | None, encoder: Encoder | None) -> WindowEmbeddings:
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    end_time = start_time + samples.size / SAMPLE_RATE
    spans = _clip(speech_spans, start_time, end_time)
    if not spans:
        return WindowEmbeddings.empty(start_time, end_time)
    encoder = encoder or get_encoder(device)
    feats = [fbank(samples[int(round((a - start_time) * SAMPLE_RATE)): int(round((b - start_time) * SAMPLE_RATE))])
             for a, b in spans]
    plans = [_chunks(len(f)) for f in feats]
    times, stats = [], []
    for (a, b), f, frame_map, computed in zip(spans, feats, *_run(encoder, feats, plans)):
        span_times, span_stats = _pool(frame_map, computed, a, b)
        pauses = _pauses(f, a)
        for (lo, hi), row in zip(span_times, span_stats):
            kept = _without_pauses(lo, hi, pauses)
            if kept:
                times.append(kept)
                stats.append(row)
    if not stats:
        return WindowEmbeddings.empty(start_time, end_time)
    vectors = encoder.embed(np.stack(stats).astype(np.float32))
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
    return WindowEmbeddings(start_time, end_time, np.asarray(times, np.float64), vectors.astype(np.float16))


def _pauses(feats: np.ndarray, start: float) -> list[tuple[float, float]]:
    """Pauses inside a speech span: PAUSE seconds or more, PAUSE_DB below the span's loud
    frames (the VAD keeps short pauses inside its spans, and its spans are padded)."""
    if not len(feats):
        return []
    level = 10 * np.log10(np.exp(feats.astype(np.float64)).sum(axis=1))  # frame energy, dB
    quiet = level < np.percentile(level, 90) - PAUSE_DB
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))).reshape(-1, 2)
    return [(start + lo * 0.01, start + hi * 0.01 + 0.015) for lo, hi in edges if hi - lo >= PAUSE * 100]


def _without_pauses(lo: float, hi: float, pauses: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The stretch [lo, hi] less the pauses at either end of it; None if it is all pause."""
    for p, q in pauses:
        if p <= lo < q:
            lo = q
        if p < hi <= q:
            hi = p
    return (lo, hi) if hi - lo >= 0.05 else None


def _clip(spans: Iterable, start: float, end: float) -> list[tuple[float, float]]:
    """The spans inside [start, end], overlapping ones merged, short ones dropped."""
    merged: list[list[float]] = []
    for a, b in sorted((s.start, s.end) if hasattr(s, "start") else (s[0], s[1]) for s in spans):
        a, b = max(float(a), start), min(float(b), end)
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged if b - a >= MIN_SPAN]


def _chunks(frames: int) -> list[int]:
    """Start frames of the chunks covering `frames`: back to back, the last one flush with the
    end (overlapping its neighbour), or one short chunk for a short span."""
    if frames <= CHUNK:
        return [0] if frames >= 2 * MIN_FRAMES else []
    starts = list(range(0, frames - CHUNK + 1, CHUNK))
    if starts[-1] + CHUNK < frames:
        starts.append(frames - CHUNK)
    return starts


def _run(encoder: Encoder, feats: list[np.ndarray], plans: list[list[int]]):
    """Per span, its frame map (512, frames) and which of its frames were computed."""
    outputs: dict[tuple[int, int], np.ndarray] = {}
    _forward(encoder, feats, plans, [(s, i) for s, plan in enumerate(plans) for i in range(len(plan))], outputs)
    maps, masks = [], []
    for s, (plan, f) in enumerate(zip(plans, feats)):
        frame_map = np.zeros((0, (len(f) + 1) // 2), np.float32)
        computed = np.zeros(frame_map.shape[1], bool)
        for i in sorted(range(len(plan)), key=lambda i: i != len(plan) - 1):  # the tail first: others overwrite it
            out = outputs[s, i]
            if frame_map.shape[0] == 0:
                frame_map = np.zeros((out.shape[0], frame_map.shape[1]), np.float32)
            at = min((plan[i] + 1) // 2, frame_map.shape[1] - out.shape[1])
            frame_map[:, at:at + out.shape[1]] = out
            computed[at:at + out.shape[1]] = True
        maps.append(frame_map)
        masks.append(computed)
    return maps, masks


def _forward(encoder: Encoder, feats, plans, todo: Sequence[tuple[int, int]], outputs: dict) -> None:
    """Run the listed (span, chunk) pairs, full-length chunks batched together."""
    full = [(s, i) for s, i in todo if len(feats[s]) >= CHUNK]
    for k in range(0, len(full), BATCH):
        batch = full[k:k + BATCH]
        x = np.stack([_normalised(feats[s], plans[s][i], CHUNK) for s, i in batch])
        for key, out in zip(batch, encoder.frames(x)):
            outputs[key] = out
    for s, i in todo:
        if len(feats[s]) < CHUNK:  # a short span: its own length, alone
            outputs[s, i] = encoder.frames(_normalised(feats[s], 0, len(feats[s]))[None])[0]


def _normalised(f: np.ndarray, start: int, length: int) -> np.ndarray:
    x = f[start:start + length]
    return x - x.mean(axis=0)  # mean normalisation per chunk, as CAM++ was trained


def _pool(frame_map: np.ndarray, computed: np.ndarray, a: float, b: float):
    """(times, stats) of windows pooled over each run of computed frames; the times tile the
    span from a to b, each embedding owning the stretch nearest its window's centre."""
    centres, stats = [], []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], computed.astype(np.int8), [0]]))).reshape(-1, 2)
    for lo, hi in edges:
        if hi - lo < MIN_FRAMES:
            continue
        run = frame_map[:, lo:hi].astype(np.float64)
        first = np.concatenate([np.zeros((run.shape[0], 1)), np.cumsum(run, axis=1)], axis=1)
        second = np.concatenate([np.zeros((run.shape[0], 1)), np.cumsum(run * run, axis=1)], axis=1)
        width = min(WINDOW, hi - lo)
        starts = list(range(0, hi - lo - width + 1, STEP))
        if starts[-1] + width < hi - lo:
            starts.append(hi - lo - width)
        for s in starts:
            mean = (first[:, s + width] - first[:, s]) / width
            var = (second[:, s + width] - second[:, s] - width * mean * mean) / (width - 1)
            stats.append(np.concatenate([mean, np.sqrt(np.maximum(var, 0.0))]))
            centres.append(a + (lo + s + width / 2) * FRAME_SECONDS)
    if not centres:
        return [], []
    bounds = [a, *((x + y) / 2 for x, y in zip(centres, centres[1:])), b]
    return [(bounds[i], bounds[i + 1]) for i in range(len(centres))], stats
