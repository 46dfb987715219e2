"""Labels per embedding -> speaker turns: short flickers smoothed away, touching stretches of one
speaker merged, speakers numbered by first appearance."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import SpeakerTurn, WindowEmbeddings, stack

MIN_RUN = 0.45    # seconds: a shorter run between two stretches of one other speaker is theirs
JOIN_GAP = 0.05   # seconds: stretches of one speaker closer than this are one turn


def turns(embeddings: np.ndarray | Sequence[WindowEmbeddings], labels: Sequence[int]) -> list[SpeakerTurn]:
    """Turns from the embeddings' times (an (n, 2) array, or the windows themselves) and one
    label per embedding row (as `cluster` returns them, in the same order)."""
    return numbered_turns(embeddings, labels)[0]


def numbered_turns(embeddings: np.ndarray | Sequence[WindowEmbeddings],
                   labels: Sequence[int]) -> tuple[list[SpeakerTurn], dict[int, int]]:
    """`turns`, and which turn speaker each cluster label became (a label whose every run was
    smoothed away has none)."""
    times = embeddings if isinstance(embeddings, np.ndarray) else stack(embeddings)[0]
    labels = np.asarray(labels, dtype=np.int64)
    if len(times) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(times)} embeddings")
    if not len(times):
        return [], {}
    order = np.argsort(times[:, 0], kind="stable")
    runs = _runs(times[order], labels[order])
    runs = _smooth(runs)
    return _numbered(_join(runs))


def _runs(times: np.ndarray, labels: np.ndarray) -> list[list]:
    """[start, end, label] of consecutive rows with one label and no gap between them."""
    runs: list[list] = []
    for (start, end), label in zip(times.tolist(), labels.tolist()):
        if runs and runs[-1][2] == label and start - runs[-1][1] <= JOIN_GAP:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end, label])
    return runs


def _smooth(runs: list[list]) -> list[list]:
    """A run shorter than MIN_RUN, touching runs of one same other label on both sides, is a
    flicker of the embeddings (a window straddling a pause or a laugh), not a turn."""
    out: list[list] = []
    for run in runs:
        out.append(list(run))
        while len(out) >= 3 and _flicker(*out[-3:]):
            before, _, after = out[-3:]
            out[-3:] = [[before[0], after[1], before[2]]]
    return out


def _flicker(before: list, run: list, after: list) -> bool:
    touching = run[0] - before[1] <= JOIN_GAP and after[0] - run[1] <= JOIN_GAP
    return touching and before[2] == after[2] != run[2] and run[1] - run[0] < MIN_RUN


def _join(runs: list[list]) -> list[list]:
    joined: list[list] = []
    for run in runs:
        if joined and joined[-1][2] == run[2] and run[0] - joined[-1][1] <= JOIN_GAP:
            joined[-1][1] = max(joined[-1][1], run[1])
        else:
            joined.append(list(run))
    return joined


def _numbered(runs: list[list]) -> tuple[list[SpeakerTurn], dict[int, int]]:
    names: dict[int, int] = {}
    found = [SpeakerTurn(round(float(a), 3), round(float(b), 3), names.setdefault(int(label), len(names)))
             for a, b, label in runs]
    return found, names
