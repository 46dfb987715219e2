"""Known speakers (voice profiles, the API's reference clips) and matching them to the clusters
of one recording.

A voice is the normalised mean of its unit embeddings (its centroid). After the one clustering,
each cluster's centroid is compared with each known voice by cosine similarity; pairs are taken
best first, one to one, and only above MATCH_THRESHOLD. The threshold was measured on held-out
pairs of real voices (scripts/bench/voice_match.py; README, "Who said what").
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Cosine similarity of a cluster's centroid and a known voice's at which they are one person.
# Measured (scripts/bench/voice_match.py, 10 real voices, held-out clips): different voices reached
# 0.44 at most (false accepts 0 % from 0.45 up), one voice on clean, noisy, reverberant and Opus
# audio 0.60 at least; telephone-band audio 0.49 (11 % of it rejected here). 0.55 keeps a margin
# above the highest different voice: a wrong name is worse than "Speaker N". README has the table.
MATCH_THRESHOLD = 0.55


def encode_vector(vector: np.ndarray) -> str:
    """A unit vector as base64 little-endian float32 (JSON-safe, 1 KB for CAM++'s 192 values)."""
    return base64.b64encode(np.ascontiguousarray(unit(vector), "<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def unit(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    return v / max(float(np.linalg.norm(v)), 1e-9)


@dataclass(frozen=True)
class KnownSpeaker:
    """A named voice to look for. `vector`: encode_vector of its centroid (a string, so the
    options that carry it stay JSON as stored with a job)."""

    name: str
    vector: str

    @classmethod
    def of(cls, name: str, centroid: np.ndarray) -> "KnownSpeaker":
        return cls(name, encode_vector(centroid))

    @property
    def embedding(self) -> np.ndarray:
        return decode_vector(self.vector)


@dataclass(frozen=True)
class Voice:
    """One speaker's centroid in a recording, and how many embeddings (0.5 s steps) made it."""

    centroid: np.ndarray
    count: int


def centroid_of(vectors: np.ndarray) -> Voice:
    rows = np.asarray(vectors, dtype=np.float32)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)
    return Voice(unit(rows.mean(axis=0)), int(len(rows)))


def voices_by_label(vectors: np.ndarray, labels: np.ndarray) -> dict[int, Voice]:
    """Each cluster label's centroid."""
    return {int(k): centroid_of(vectors[labels == k]) for k in np.unique(labels)}


def merged(a: Voice, b: Voice) -> Voice:
    """Two centroids of one voice, weighted by their counts."""
    total = a.count + b.count
    return Voice(unit(a.centroid * a.count + b.centroid * b.count), total) if total else a


def match(voices: dict[int, Voice], known: Sequence[KnownSpeaker],
          threshold: float = MATCH_THRESHOLD) -> dict[int, str]:
    """{cluster label: known name}: best pairs first, each cluster and each name used once, only
    pairs at or above `threshold`. Known voices of another dimension are ignored."""
    if not voices or not known:
        return {}
    labels = list(voices)
    centroids = np.stack([voices[k].centroid for k in labels])
    wanted = [k for k in known if k.embedding.shape == centroids.shape[1:]]
    if not wanted:
        return {}
    sim = centroids @ np.stack([unit(k.embedding) for k in wanted]).T
    out: dict[int, str] = {}
    used_names: set[str] = set()
    for flat in np.argsort(-sim, axis=None):
        i, j = np.unravel_index(flat, sim.shape)
        if sim[i, j] < threshold:
            break
        if labels[i] in out or wanted[j].name in used_names:
            continue
        out[labels[i]] = wanted[j].name
        used_names.add(wanted[j].name)
    return out
