"""Speaker embeddings of one transcription window, computed only inside its speech spans.

The network is the expensive part, so each second of speech goes through it at most once:
a span is cut into 1.5 s chunks (the length CAM++ embeds well), each chunk runs once, and the
chunks' frame maps are laid end to end. Embeddings are then pooled from that map over 1.5 s
windows every STEP seconds, which costs almost nothing, so turns get a fine time grid without
overlapping network passes.

Where one voice goes on, even that is more than needed: odd chunks are run only where the
chunks on either side of them disagree (cosine below SKIP_SIMILARITY). In long monologues
about half the network passes are saved; a short interjection between two chunks of the same
voice can be missed, which is why the skip needs a span of at least SKIP_MIN_CHUNKS chunks.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .base import SpanLike, WindowEmbeddings
from .encoder import Encoder, get_encoder
from .features import SAMPLE_RATE, fbank

CHUNK = 150              # feature frames (10 ms) per network pass
WINDOW = 75              # frame-map frames (20 ms) pooled into one embedding: 1.5 s
STEP = 25                # frame-map frames between embeddings: 0.5 s
MIN_SPAN = 0.3           # seconds: shorter speech spans get no embedding
MIN_FRAMES = 20          # frame-map frames: the least a pooled window may hold
SKIP_SIMILARITY = 0.55   # neighbours this alike: the chunk between them is the same voice
SKIP_MIN_CHUNKS = 5      # spans shorter than this many chunks are run whole
BATCH = 32               # chunks per network call
FRAME_SECONDS = 0.02     # one frame-map frame


def embed_window(samples: np.ndarray, start_time: float, speech_spans: Iterable[SpanLike | object],
                 device: str | None = "cpu", encoder: Encoder | None = None, skip: bool = True) -> WindowEmbeddings:
    """Embeddings of the speech in one window of audio (16 kHz mono float32) that starts at
    `start_time` seconds; `speech_spans` are absolute (start, end) pairs or SpeechSpans."""
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
    for (a, b), frame_map, computed in zip(spans, *_run(encoder, feats, plans, skip)):
        span_times, span_stats = _pool(frame_map, computed, a, b)
        times += span_times
        stats += span_stats
    if not stats:
        return WindowEmbeddings.empty(start_time, end_time)
    vectors = encoder.embed(np.stack(stats).astype(np.float32))
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
    return WindowEmbeddings(start_time, end_time, np.asarray(times, np.float64), vectors.astype(np.float16))


def _clip(spans: Iterable, start: float, end: float) -> list[tuple[float, float]]:
    out = []
    for span in spans:
        a, b = (span.start, span.end) if hasattr(span, "start") else span
        a, b = max(float(a), start), min(float(b), end)
        if b - a >= MIN_SPAN:
            out.append((a, b))
    return sorted(out)


def _chunks(frames: int) -> list[int]:
    """Start frames of the chunks covering `frames`: back to back, the last one flush with the
    end (overlapping its neighbour), or one short chunk for a short span."""
    if frames <= CHUNK:
        return [0] if frames >= 2 * MIN_FRAMES else []
    starts = list(range(0, frames - CHUNK + 1, CHUNK))
    if starts[-1] + CHUNK < frames:
        starts.append(frames - CHUNK)
    return starts


def _run(encoder: Encoder, feats: list[np.ndarray], plans: list[list[int]], skip: bool):
    """Per span, its frame map (512, frames) and which of its frames were computed."""
    outputs: dict[tuple[int, int], np.ndarray] = {}
    first = [(s, i) for s, plan in enumerate(plans) for i in range(len(plan))
             if not skip or len(plan) < SKIP_MIN_CHUNKS or i % 2 == 0 or i == len(plan) - 1]
    _forward(encoder, feats, plans, first, outputs)
    if skip:
        rest = [(s, i) for s, plan in enumerate(plans) if len(plan) >= SKIP_MIN_CHUNKS
                for i in range(1, len(plan) - 1, 2) if _differ(encoder, outputs[s, i - 1], outputs[s, i + 1])]
        _forward(encoder, feats, plans, rest, outputs)
    maps, masks = [], []
    for s, (plan, f) in enumerate(zip(plans, feats)):
        frame_map = np.zeros((0, (len(f) + 1) // 2), np.float32)
        computed = np.zeros(frame_map.shape[1], bool)
        for i in sorted(range(len(plan)), key=lambda i: i != len(plan) - 1):  # the tail first: others overwrite it
            out = outputs.get((s, i))
            if out is None:
                continue
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


def _differ(encoder: Encoder, left: np.ndarray, right: np.ndarray) -> bool:
    a, b = encoder.embed(np.stack([_stats(left), _stats(right)]))
    return float(a @ b) < SKIP_SIMILARITY * float(np.linalg.norm(a) * np.linalg.norm(b))


def _stats(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x.mean(axis=1), x.std(axis=1, ddof=1)])


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
