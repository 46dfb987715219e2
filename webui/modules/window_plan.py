"""Where windows end: at segment boundaries near the window length, chosen so that the windows'
packed speech takes the fewest model inputs.

A window is packed on its own (windows share nothing: checkpoints, lanes, Ray), so its last
input is sent padded to the engine's maximum whatever it holds. Closed at a fixed length, a
window leaves about half an input empty on average: 2.4 inputs of 30 in 15 minutes of Czech
dialogue, 2.5 of 32 in 19 minutes of French telephone prompts. Here each candidate window's
speech is cut out (VAD) and packed as the run will pack it, and the ends are chosen over the
whole recording, each within `SLACK` of the planned length. The run computes the same chunks
again from the same audio, so the plan only fixes where windows end."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

from .chunks import SpeechChunk, agree_at_cuts, input_counts, make_chunk
from .transcript import Segment
from .vads import VadOptions, speech_spans

SLACK = 0.25  # a window may end this fraction of its planned length sooner or later


def filled_windows(segments: Sequence[Segment], read: Callable[[float, float], np.ndarray], vad: VadOptions,
                   max_input: float, first_seconds: float, seconds: float) -> tuple[tuple[int, int], ...]:
    """Consecutive runs of segments ([first, last) indices) that together take the fewest model
    inputs, the first about `first_seconds` long (or up to `seconds` while its speech fits one
    input: `_one_input_ends`) and the rest about `seconds` (within SLACK; the
    last may be shorter); among plans with as many inputs, the one with windows closest to their
    planned lengths. `read(start, end)` gives a stretch of the recording's samples.

    A shortest-path search over window ends in time order: each window's inputs are counted by
    packing its VAD chunks as the run will. Only the chunks of the segments within one window's
    reach of the end being extended are held (a few minutes of audio); every segment's spans are
    heard first (`_heard`)."""
    n = len(segments)
    best: dict[int, tuple[int, float, int]] = {0: (0, 0.0, -1)}  # end -> (inputs, off-target s, previous end)
    chunks: dict[int, SpeechChunk] = {}
    heard = _heard(segments, read, vad)  # each segment's VAD spans (its neighbours agree with them)

    def chunk(i: int) -> SpeechChunk:
        # Spans agreed with both neighbours, as a window's run agrees them (make_chunks); at the
        # window's own edges the run has no neighbour to agree with: a plan may count a few
        # seconds more or less there.
        if i not in chunks:
            near = [j for j in (i - 1, i, i + 1) if 0 <= j < n]
            spans = agree_at_cuts([segments[j] for j in near], [heard[j] for j in near])[near.index(i)]
            chunks[i] = make_chunk(segments[i], read(segments[i].start, segments[i].end), vad, spans)
        return chunks[i]

    for first in range(n):
        if first not in best:
            continue
        for i in [i for i in chunks if i < first]:
            del chunks[i]  # no window that is still to be weighed starts before `first`
        inputs, off, _ = best[first]
        target = seconds if first else first_seconds
        ends = _ends(segments, first, target)
        if not first:
            ends = sorted(set(ends) | set(_one_input_ends(segments, chunk, max_input, vad.keep_gap, ends[0], seconds)))
        used = input_counts([chunk(i) for i in range(first, ends[-1])], max_input, vad.keep_gap)
        for end in ends:
            length = segments[end - 1].end - segments[first].start
            cost = (inputs + used[end - first - 1], off + (0.0 if end == n else abs(length - target)), first)
            if end not in best or cost[:2] < best[end][:2]:
                best[end] = cost
    windows, end = [], n
    while end:
        first = best[end][2]
        windows.append((first, end))
        end = first
    return tuple(reversed(windows))


HEARING_THREADS = 4  # at most; Silero's ONNX session runs one thread a call and lets the GIL go


def _heard(segments: Sequence[Segment], read: Callable[[float, float], np.ndarray], vad: VadOptions) -> list[list]:
    """Every segment's VAD spans, heard on the CPU's cores at once: the plan comes before the
    first window can start, and hearing is nearly all of it (Silero's voice check: 1.2 s of a
    CPU for 20 minutes). Each thread holds one segment's samples at a time. What Silero heard is
    remembered (voice_check), so the windows' runs do not hear it again."""
    def hear(segment: Segment) -> list:
        return speech_spans(read(segment.start, segment.end), segment.start, vad)

    threads = max(1, min(HEARING_THREADS, os.cpu_count() or 1, len(segments)))
    if threads == 1:
        return [hear(s) for s in segments]
    with ThreadPoolExecutor(threads, thread_name_prefix="window-plan") as pool:
        return list(pool.map(hear, segments))


def _ends(segments: Sequence[Segment], first: int, target: float) -> list[int]:
    """Where a window starting at segment `first` may end (exclusive indices): every segment end
    within SLACK of `target`, and the first end past `target` (where windows of a fixed length
    end: so no plan is worse than theirs); only the recording's end when it is that close."""
    start, n = segments[first].start, len(segments)
    lo, hi = target * (1 - SLACK), target * (1 + SLACK)
    if segments[-1].end - start <= hi:
        return [n]  # the rest is one window: a split would only add a partly empty input
    plain = next(i + 1 for i in range(first, n) if segments[i].end - start >= target)
    return sorted({i + 1 for i in range(first, n) if lo <= segments[i].end - start <= hi} | {plain})


def _one_input_ends(segments: Sequence[Segment], chunk: Callable[[int], SpeechChunk], max_input: float,
                    gap: float, shortest: int, longest: float) -> list[int]:
    """Where the first window may also end: every segment end after `shortest` (the first of
    `_ends`) up to which the recording's speech still packs into one input, within `longest`
    seconds of audio. The first window exists for a quick first text, and one input takes about
    as long to decode whether it holds 12 or 29 seconds of speech; closed at a fixed 30 s of
    audio it left most of an input empty (12 s of speech in it, 20 minutes of Mandarin)."""
    reach = [end for end in range(shortest + 1, len(segments) + 1) if segments[end - 1].end - segments[0].start <= longest]
    if not reach:
        return []
    counts = input_counts([chunk(i) for i in range(reach[-1])], max_input, gap)  # one per prefix, never falling
    return [end for end in reach if counts[end - 1] <= 1]
