"""Cut plan: turn a silence scan into segments of about 25–45 s cut only at silence.

Pure functions of the scan, so they are tested without audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .audio import ENVELOPE_HOP, Silence
from .transcript import Segment

AUTO = "auto"
QUIET_WINDOW = 0.3  # seconds: the short window searched when a stretch has no real silence


@dataclass(frozen=True)
class SegmentLimits:
    min_seconds: float
    max_seconds: float
    merge_below: float = 8.0


def auto_max_seconds(duration: float, engine_cap: float | None = None) -> float:
    """45 s up to 30 min, 60 s up to 90 min, 90 s beyond; never above what the engine accepts."""
    if duration <= 30 * 60:
        chosen = 45.0
    elif duration <= 90 * 60:
        chosen = 60.0
    else:
        chosen = 90.0
    return min(chosen, engine_cap) if engine_cap else chosen


def limits_for(duration: float, max_setting: float | str = AUTO, engine_cap: float | None = None) -> SegmentLimits:
    if max_setting == AUTO:
        maximum = auto_max_seconds(duration, engine_cap)
    else:
        maximum = float(max_setting)
        if maximum < 5:
            raise ValueError("maximum segment length must be at least 5 s")
        if engine_cap:
            maximum = min(maximum, engine_cap)
    # Aim for 25 s and up; when the engine caps segments short (Whisper: 30 s) leave a
    # 10 s window to find a silence in.
    minimum = min(25.0, max(maximum - 10.0, maximum * 0.5))
    return SegmentLimits(minimum, maximum, merge_below=min(8.0, minimum))


def plan_segments(
    duration: float,
    silences: Sequence[Silence],
    envelope_db: np.ndarray,
    limits: SegmentLimits,
) -> list[Segment]:
    """Cut points at silences so every segment is ≤ max; short pieces merged into a neighbour."""
    cuts = [0.0]
    while duration - cuts[-1] > limits.max_seconds:
        cuts.append(_next_cut(cuts[-1], silences, envelope_db, limits))
    cuts.append(duration)
    cuts = _merge_short(cuts, silences, envelope_db, limits)
    return [Segment(i, round(a, 3), round(b, 3)) for i, (a, b) in enumerate(zip(cuts, cuts[1:]))]


def _next_cut(pos: float, silences: Sequence[Silence], envelope_db: np.ndarray, limits: SegmentLimits) -> float:
    lo, hi = pos + limits.min_seconds, pos + limits.max_seconds
    cut = _best_silence_cut(lo, hi, silences)
    return cut if cut is not None else quietest_point(lo, hi, envelope_db)


def _best_silence_cut(lo: float, hi: float, silences: Sequence[Silence]) -> float | None:
    """Middle of the longest silence overlapping [lo, hi], clamped into the window."""
    candidates = []
    for s in silences:
        overlap_start, overlap_end = max(s.start, lo), min(s.end, hi)
        if overlap_end > overlap_start:
            # Longest silence wins; on ties the later one (longer segments, fewer calls).
            key = (round(s.duration, 2), overlap_start)
            candidates.append((key, min(max((s.start + s.end) / 2, lo), hi)))
    return max(candidates)[1] if candidates else None


def quietest_point(lo: float, hi: float, envelope_db: np.ndarray) -> float:
    """Centre of the quietest short window in [lo, hi]: better than cutting blindly at the limit."""
    width = max(1, int(round(QUIET_WINDOW / ENVELOPE_HOP)))
    first, last = int(lo / ENVELOPE_HOP), int(hi / ENVELOPE_HOP)
    window = envelope_db[first:last]
    if window.size < width:
        return hi
    smoothed = np.convolve(window, np.ones(width) / width, mode="valid")
    # Latest among equally quiet windows keeps segments long.
    idx = len(smoothed) - 1 - int(np.argmin(smoothed[::-1]))
    return (first + idx + width / 2) * ENVELOPE_HOP


def _merge_short(cuts: list[float], silences: Sequence[Silence], envelope_db: np.ndarray, limits: SegmentLimits) -> list[float]:
    """Remove cuts that leave a piece shorter than `merge_below`, keeping every piece ≤ max."""
    cuts = list(cuts)
    changed = True
    while changed and len(cuts) > 2:
        changed = False
        for i in range(len(cuts) - 1):
            if cuts[i + 1] - cuts[i] >= limits.merge_below:
                continue
            # Merge into the shorter neighbour that keeps the result within the maximum.
            options = []
            if i > 0 and cuts[i + 1] - cuts[i - 1] <= limits.max_seconds:
                options.append((cuts[i + 1] - cuts[i - 1], i))          # drop the left cut
            if i + 2 < len(cuts) and cuts[i + 2] - cuts[i] <= limits.max_seconds:
                options.append((cuts[i + 2] - cuts[i], i + 1))          # drop the right cut
            if options:
                del cuts[min(options)[1]]
                changed = True
                break
            if i + 2 == len(cuts) and i > 0:
                # A short tail that cannot join its neighbour whole: move the previous cut
                # back so both pieces are long enough, still at a silence or quiet point.
                lo = max(cuts[i - 1] + limits.merge_below, cuts[-1] - limits.max_seconds)
                hi = cuts[-1] - limits.merge_below
                if lo < hi:
                    moved = _best_silence_cut(lo, hi, silences)
                    cuts[i] = moved if moved is not None else quietest_point(lo, hi, envelope_db)
                    changed = cuts[i + 1] - cuts[i] >= limits.merge_below
                    break
    return cuts


def plan_windows(segments: Sequence[Segment], first_seconds: float, seconds: float) -> tuple[tuple[int, int], ...]:
    """Consecutive runs of segments, each closed once it spans `seconds` (the first one
    `first_seconds`, so the first text comes quickly)."""
    windows, first = [], 0
    for i, seg in enumerate(segments):
        if seg.end - segments[first].start >= (seconds if windows else first_seconds):
            windows.append((first, i + 1))
            first = i + 1
    if first < len(segments):
        windows.append((first, len(segments)))
    return tuple(windows)
