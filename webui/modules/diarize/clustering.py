"""One clustering over the whole recording: spectral clustering of cosine affinities, with the
speaker count from the largest eigengap of the graph Laplacian.

Single-threshold agglomerative clustering was tried and dropped: no one threshold fit both
clean and noisy recordings. The eigengap adapts to each recording; thresholds are used only
as guards after it (merge near-identical clusters, accept a split only between clearly
different voices), where a wide margin is safe.

The Laplacian is the normalised one, so the eigengap does not depend on how many neighbours
each point kept. Past DENSE_MAX points the affinity is a sparse k-nearest-neighbour graph and
the smallest eigenpairs of I - D^-1/2 A D^-1/2 come from ARPACK as the largest of
D^-1/2 A D^-1/2 (largest eigenvalues converge fast; the dense solver grows as n^3). Past
MAX_POINTS an even subsample is clustered and every point then goes to the nearest cluster
centre, so a 150 min meeting (16k embeddings) clusters in under 2 s.

The eigengap sees big clusters first: on a long meeting led by one voice, minor voices can hide
inside one cluster. The split pass runs the same eigengap inside each cluster and keeps a split
only between clearly different voices.

The k-means on the spectral embedding is a small numpy one (k-means++ seeds, best of 10):
importing scikit-learn for it cost 1.5-2 s per job, a third of diarizing a 5-minute file.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import DiarizeOptions, WindowEmbeddings, limited_threads, stack

DENSE_MAX = 1500
MAX_POINTS = 6000
PRUNE = 0.05             # share of the most similar points kept as neighbours of each point ...
NEIGHBOURS = (10, 60)    # ... but never fewer / more than these
MERGE_SIMILARITY = 0.75  # cluster centres this alike are one voice
SPLIT_SIMILARITY = 0.45  # a split is kept only if its parts' centres are below this
SPLIT_MIN = 40           # points (20 s of speech): smaller clusters are not split
SPLIT_PART = 0.05        # and no part of a split may be below this share of its cluster (or 10 points)
MINOR_POINTS = 5         # clusters smaller than this many points (2.5 s of speech) ...
MINOR_SHARE = 0.01       # ... or this share of all points are absorbed by the nearest big one
SHARED = 1.5             # seconds: embeddings closer than this share audio (embed.WINDOW)
SMALL = 12               # fewer points: no spectral clustering, only merging by similarity ...
SMALL_MERGE = 0.3        # ... down to this (windows of one voice are above it, of two mostly below)
K_LIMIT = 20
KMEANS_STARTS = 10       # k-means runs from different seeds; the tightest is kept


def cluster(embeddings: np.ndarray | Sequence[WindowEmbeddings],
            options: DiarizeOptions = DiarizeOptions()) -> np.ndarray:
    """A speaker label per embedding row (0, 1, ... by first appearance in the input order).
    Given WindowEmbeddings, their times keep embeddings that share audio out of each other's
    neighbourhoods; given a bare (n, dim) array, that guard is off."""
    with limited_threads():
        return _cluster(embeddings, options)


def _cluster(embeddings, options: DiarizeOptions) -> np.ndarray:
    if isinstance(embeddings, np.ndarray):
        vectors, centres = embeddings, None
    else:
        times, vectors = stack(embeddings)
        centres = times.mean(axis=1) if len(times) else None
    n = len(vectors)
    low, high = options.bounds(K_LIMIT)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    x = _unit(vectors)
    anchors = np.linspace(0, n - 1, MAX_POINTS).round().astype(int) if n > MAX_POINTS else np.arange(n)
    a, t = x[anchors], None if centres is None else centres[anchors]
    if len(a) < SMALL:  # a few seconds of speech: one voice unless clearly more
        labels = _merge(a, np.arange(len(a)), low, SMALL_MERGE)
    else:
        labels = _absorb_minor(a, _spectral(a, t, low, high), low)
        if options.num_speakers is None:
            labels = _merge(a, labels, low)
            if options.split_pass:
                labels = _merge(a, _split(a, t, labels, high), low)
    labels = _bound(a, labels, low, high)
    # Every point to its nearest cluster centre: the subsample's labels reach all points, and
    # points that k-means put on the wrong side of a boundary come back.
    final = _nearest(x, _centres(a, labels))
    if len(np.unique(final)) < labels.max() + 1:  # a centre left with no points: keep the count
        final[anchors] = labels
    return _by_first_appearance(final)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)


def _spectral(x: np.ndarray, times: np.ndarray | None, low: int, high: int) -> np.ndarray:
    n = len(x)
    kmax = max(1, min(high, n - 1, K_LIMIT))
    low = min(low, kmax)
    values, vectors = _eigen(_affinity(x, times), kmax + 1)
    if low == high or low == kmax:
        k = low if low == high else kmax
    else:
        gaps = np.diff(values[: kmax + 1])
        k = int(np.argmax(gaps[low - 1:kmax])) + low
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    points = vectors[:, :k] / np.maximum(np.linalg.norm(vectors[:, :k], axis=1, keepdims=True), 1e-9)
    return _kmeans(points, k)


def _kmeans(points: np.ndarray, k: int, starts: int = KMEANS_STARTS, rounds: int = 300) -> np.ndarray:
    """Lloyd's k-means from greedy k-means++ seeds, the best of `starts` runs (least inertia),
    as scikit-learn's KMeans(n_init=10) does (the same labels on the bench's cases)."""
    points = np.asarray(points, np.float64)
    rng = np.random.default_rng(0)
    best, least = np.zeros(len(points), np.int64), np.inf
    for _ in range(starts):
        centres = _seeds(points, k, rng)
        for _ in range(rounds):
            labels = _sq_distances(points, centres).argmin(axis=1)
            moved = _means(points, labels, centres)
            if np.allclose(moved, centres, rtol=0.0, atol=1e-9):
                break
            centres = moved
        distances = _sq_distances(points, centres)
        labels = distances.argmin(axis=1)
        inertia = float(distances[np.arange(len(points)), labels].sum())
        if inertia < least:
            best, least = labels.astype(np.int64), inertia
    return best


def _seeds(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++: each next seed is the best of a few far-weighted draws."""
    n, trials = len(points), 2 + int(np.log(k))
    chosen = [int(rng.integers(n))]
    closest = _sq_distances(points, points[chosen])[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        draws = (rng.integers(n, size=trials) if total <= 0 else
                 np.minimum(np.searchsorted(np.cumsum(closest), rng.random(trials) * total), n - 1))
        candidates = np.minimum(closest[None, :], _sq_distances(points[draws], points))
        pick = int(np.argmin(candidates.sum(axis=1)))
        chosen.append(int(draws[pick]))
        closest = candidates[pick]
    return points[chosen]


def _means(points: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each cluster's mean; an emptied cluster keeps its centre."""
    sums = np.zeros_like(centres)
    np.add.at(sums, labels, points)
    counts = np.bincount(labels, minlength=len(centres))[:, None]
    return np.where(counts > 0, sums / np.maximum(counts, 1), centres)


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(axis=1)[:, None] - 2.0 * a @ b.T + (b * b).sum(axis=1)[None, :], 0.0)


def _affinity(x: np.ndarray, times: np.ndarray | None):
    """Cosine similarities, each row pruned to its nearest neighbours, made symmetric.

    Embeddings pooled from overlapping audio (centres under SHARED seconds apart) are left out
    of each other's neighbours: they are near copies, and with them in, the graph links mostly
    neighbours in time and spectral clustering cuts a voice into stretches of time."""
    n = len(x)
    keep = min(int(np.clip(PRUNE * n, *NEIGHBOURS)), n - 1)
    rows, cols, vals = [], [], []
    for lo in range(0, n, 1024):
        sim = x[lo:lo + 1024] @ x.T
        if times is not None:
            sim[np.abs(times[lo:lo + 1024, None] - times[None, :]) < SHARED] = -1.0
        sim[np.arange(len(sim)), np.arange(lo, lo + len(sim))] = -1.0
        top = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
        rows.append(np.repeat(np.arange(lo, lo + len(sim)), keep))
        cols.append(top.ravel())
        vals.append(np.take_along_axis(sim, top, axis=1).ravel())
    from scipy.sparse import csr_matrix

    a = csr_matrix((np.maximum(np.concatenate(vals), 0.0), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    a = 0.5 * (a + a.T)
    return a.toarray() if n <= DENSE_MAX else a.tocsr()


def _eigen(a, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` smallest eigenpairs of the normalised Laplacian I - D^-1/2 A D^-1/2, ascending
    (normalised: the eigengap does not depend on how many neighbours each point has)."""
    degree = np.asarray(a.sum(axis=1)).ravel()
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-9))
    if isinstance(a, np.ndarray):
        values, vectors = np.linalg.eigh(np.eye(len(a)) - scale[:, None] * a * scale[None, :])
        return values[:count], vectors[:, :count]
    from scipy.sparse import diags
    from scipy.sparse.linalg import eigsh

    # The smallest of I - N are the largest of N = D^-1/2 A D^-1/2: ARPACK finds those fast.
    normalised = diags(scale) @ a @ diags(scale)
    values, vectors = eigsh(normalised, k=count, which="LA", tol=1e-6, v0=np.sqrt(degree), maxiter=5000)
    order = np.argsort(-values)
    return 1.0 - values[order], vectors[:, order]


def _absorb_minor(x: np.ndarray, labels: np.ndarray, low: int) -> np.ndarray:
    """Clusters of a few points (a cough, a laugh, one odd window) go to their nearest big one."""
    labels = _compact(labels)
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes >= max(MINOR_POINTS, MINOR_SHARE * len(x)))
    if len(big) == 0 or len(big) == len(sizes) or len(big) < low:
        return labels
    centres = _centres(x, labels)[big]
    small = ~np.isin(labels, big)
    labels[small] = big[np.argmax(x[small] @ centres.T, axis=1)]
    return _compact(labels)


def _centres(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    return _unit(np.stack([x[labels == i].mean(axis=0) for i in ids]))


def _compact(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _merge(x: np.ndarray, labels: np.ndarray, low: int, threshold: float | None = None) -> np.ndarray:
    """Join the two most alike clusters while their centres are above `threshold`."""
    threshold = MERGE_SIMILARITY if threshold is None else threshold
    labels = _compact(labels)
    while labels.max() + 1 > low:
        centres = _centres(x, labels)
        sim = centres @ centres.T
        np.fill_diagonal(sim, -1.0)
        i, j = np.unravel_index(np.argmax(sim), sim.shape)
        if sim[i, j] < threshold:
            break
        labels = _compact(np.where(labels == max(i, j), min(i, j), labels))
    return labels


def _split(x: np.ndarray, times: np.ndarray | None, labels: np.ndarray, high: int) -> np.ndarray:
    """Look for more voices inside each big cluster (the eigengap of the cluster alone)."""
    labels = _compact(labels)
    for c in range(labels.max() + 1):
        members = np.flatnonzero(labels == c)
        room = high - (labels.max() + 1)
        if len(members) < SPLIT_MIN or room < 1:
            continue
        parts = _absorb_minor(x[members], _spectral(x[members], None if times is None else times[members], 1,
                                                    min(room + 1, 4)), 1)
        if parts.max() == 0:
            continue
        sizes = np.bincount(parts)
        centres = _centres(x[members], parts)
        sim = centres @ centres.T
        np.fill_diagonal(sim, -1.0)
        if sizes.min() >= max(10, SPLIT_PART * len(members)) and sim.max() < SPLIT_SIMILARITY:
            labels[members[parts > 0]] = labels.max() + parts[parts > 0]
    return _compact(labels)


def _bound(x: np.ndarray, labels: np.ndarray, low: int, high: int) -> np.ndarray:
    """Merge the most alike clusters down to `high`; split the widest up to `low`."""
    labels = _compact(labels)
    while labels.max() + 1 > high:
        centres = _centres(x, labels)
        sim = centres @ centres.T
        np.fill_diagonal(sim, -2.0)
        i, j = np.unravel_index(np.argmax(sim), sim.shape)
        labels = _compact(np.where(labels == max(i, j), min(i, j), labels))
    while labels.max() + 1 < low:
        sizes = np.bincount(labels)
        c = int(np.argmax(sizes))
        if sizes[c] < 2:
            break  # fewer points than speakers asked for
        members = np.flatnonzero(labels == c)
        halves = _kmeans(x[members], 2)
        if halves.min() == halves.max():
            break  # identical points: no split exists
        labels[members[halves == 1]] = labels.max() + 1
    return labels


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmax(x @ centres.T, axis=1).astype(np.int64)


def _by_first_appearance(labels: np.ndarray) -> np.ndarray:
    order = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in labels], dtype=np.int64)
