"""How far a job (or a batch of jobs) is, and when it should end: one counter (seconds of audio
done of the total) and an ETA from the rate this job has shown, with an injected clock so the
rules below are tested on recorded event sequences.

The ETA rules, in order:
* No figure until the work has a rate of its own: two advances after `begin` (the start of
  transcription, or the end of what a resumed job replayed from its checkpoint: replayed audio
  took no time and must not make the rate look fast). The first advance only starts the
  measurement: its batch carries the model's warm-up. Earlier jobs' speed is not used: a cold
  first job and a warm second one differ by far more than any estimate can absorb.
* The rate is measured at each advance (never against the clock between advances: waiting for
  the next batch does not inflate it), over the later half of the work so far (at least
  `min_window` seconds of it): a cold model's slow first batch stops weighing on it.
* While the job works normally the figure never rises: a new estimate replaces the shown one
  only when it is lower; between advances the figure stays as it was.
* A stall (no advance for `stall_factor` times the longest gap seen so far, and at least
  `min_stall` seconds) is not normal work: the figure goes (None) rather than stay stale, and the
  next advance starts a fresh figure, which may be higher.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

Clock = Callable[[], float]


class EtaEstimator:
    def __init__(self, total: float, clock: Clock = time.monotonic, stall_factor: float = 3.0,
                 min_stall: float = 45.0, min_window: float = 30.0) -> None:
        self.total = max(0.0, float(total))
        self.clock = clock
        self.stall_factor, self.min_stall, self.min_window = stall_factor, min_stall, min_window
        self._samples: deque[tuple[float, float]] = deque(maxlen=4096)  # (when, audio done)
        self.done = 0.0
        self._t0: float | None = None   # when the measured work began
        self._d0 = 0.0                  # audio already done then
        self._last: float | None = None  # when the last advance came
        self._gap = 0.0                 # the longest gap between advances so far
        self._shown: float | None = None
        self._shown_at: float = 0.0
        self._measuring = False

    def begin(self, done: float = 0.0) -> None:
        """Work starts now with `done` seconds already done (0, or what a resume replayed)."""
        self._t0, self._d0 = self.clock(), float(done)
        self.done = max(self.done, float(done))
        self._last, self._gap, self._shown = self._t0, 0.0, None
        self._samples.clear()
        self._measuring = False  # the first advance starts the measurement

    def advance(self, done: float) -> None:
        """`done` seconds of audio are finished (a value at or below the last one is ignored)."""
        done = min(float(done), self.total) if self.total else float(done)
        if done <= self.done:
            return
        now = self.clock()
        if self._t0 is None:
            self.begin(self.done)
        stalled = self.stalled(now)
        self._gap = max(self._gap, now - (self._last or now))
        self.done, self._last = done, now
        if not self._measuring:
            self._measuring, self._t0, self._d0 = True, now, done
            self._samples.append((now, done))
            return
        # The rate over the later half of the work so far: the newest sample at or before its start.
        since = now - max(self.min_window, (now - self._t0) / 2)
        t_from, d_from = self._samples[0]
        for t, d in self._samples:
            if t > since:
                break
            t_from, d_from = t, d
        self._samples.append((now, done))
        elapsed, gained = now - t_from, done - d_from
        if elapsed <= 0 or gained <= 0:
            return
        raw = (self.total - done) * elapsed / gained
        if self._shown is None or stalled or raw < self._shown:
            self._shown, self._shown_at = raw, now

    def stalled(self, now: float | None = None) -> bool:
        if self._last is None or self._shown is None:
            return False
        now = self.clock() if now is None else now
        return now - self._last > max(self.min_stall, self.stall_factor * self._gap)

    def eta(self) -> float | None:
        """Seconds left, or None: no rate yet, or stalled."""
        if self._shown is None or self.stalled():
            return None
        return max(0.0, self._shown)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


class GroupMeters:
    """One EtaEstimator per batch (group of jobs), fed with the group's total audio done."""

    def __init__(self, clock: Clock = time.monotonic, keep: int = 200) -> None:
        self.clock, self.keep = clock, keep
        self._meters: dict[str, EtaEstimator] = {}

    def update(self, group: str, total: float, done: float, working: bool) -> float | None:
        """The batch's ETA after its jobs report `done` of `total` seconds; None until one of its
        jobs has started (`working`) and some audio is done."""
        meter = self._meters.get(group)
        if meter is None or abs(meter.total - total) > 1e-6:
            if not working:
                return None
            meter = self._meters[group] = EtaEstimator(total, self.clock)
            meter.begin(done)
            while len(self._meters) > self.keep:
                self._meters.pop(next(iter(self._meters)))
        meter.advance(done)
        return meter.eta()


def clock_text(seconds: float | None) -> str:
    """h:mm:ss or m:ss ('–' when unknown)."""
    if seconds is None:
        return "–"
    whole = int(round(max(0.0, seconds)))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def work_line(done: float, total: float) -> str:
    """The one counter: '4:12 of 18:41 of audio (22%)'."""
    percent = 100.0 * done / total if total > 0 else 0.0
    return f"{clock_text(done)} of {clock_text(total)} of audio ({percent:.0f}%)"
