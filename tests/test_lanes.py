"""Windows side by side (lanes.py): on the CPU the next window runs beside the current one, events
still come in window order, and the output is the one a window-at-a-time run gives."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import pytest

from tests.conftest import DATA
from tests.fakes import EchoEngine
from webui.modules.engines.base import EngineOutput, LocalText
from webui.modules.events import Cancelled, Finished, SegmentDone, WindowDone
from webui.modules.options import PipelineOptions
from webui.modules.pipeline import transcribe
from webui.modules.windows import BatchLines

LONG = DATA / "two_cities.wav"  # 44 s of speech: several windows of 10 s
OPTIONS = PipelineOptions(itn=False, max_segment=10.0, window_seconds=10.0, first_window_seconds=10.0)


def _lanes_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("window-")]


def _comparable(events: list) -> list:
    """The events as a caller sees them, less the wall-clock stage times."""
    out = []
    for e in events:
        if isinstance(e, Finished):
            out.append((e.transcript, e.stats.segments, e.stats.batches, e.stats.second_passes))
        else:
            out.append(e)
    return out


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one CTranslate2 worker, nothing to run beside")
def test_on_the_cpu_windows_run_side_by_side_and_give_what_one_window_at_a_time_gives(whisper_engine, monkeypatch):
    assert whisper_engine.lanes == 2
    calls: list[tuple[str, float, float]] = []  # (thread, start, end) of each batch
    batch = type(whisper_engine).transcribe_batch

    def timed(audios, language="auto", **kwargs):
        started = time.perf_counter()
        try:
            return batch(whisper_engine, audios, language, **kwargs)
        finally:
            calls.append((threading.current_thread().name, started, time.perf_counter()))

    monkeypatch.setattr(whisper_engine, "transcribe_batch", timed)
    side_by_side = list(transcribe(LONG, OPTIONS, engine=whisper_engine))
    beside, calls[:] = list(calls), []
    monkeypatch.setattr(whisper_engine, "lanes", 1)
    one_at_a_time = list(transcribe(LONG, OPTIONS, engine=whisper_engine))

    def overlapping(runs):
        return [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:] if a[1] < b[2] and b[1] < a[2]]

    assert len([e for e in side_by_side if isinstance(e, WindowDone)]) >= 3
    assert overlapping(beside), beside  # two windows' batches ran at once, each on its own thread
    assert all(a[0] != b[0] for a, b in overlapping(beside))
    first = sorted(beside, key=lambda c: c[1])[:2]  # windows 0 and 1 at once, before the language is known
    assert {c[0] for c in first} == {"window-0", "window-1"} and overlapping(first)
    assert not overlapping(calls) and {c[0] for c in calls} == {threading.current_thread().name}
    # Window by window, in order, with the same text, word times and counts.
    assert [e.index for e in side_by_side if isinstance(e, WindowDone)] == \
        sorted(e.index for e in side_by_side if isinstance(e, WindowDone))
    assert [e.done for e in side_by_side if isinstance(e, SegmentDone)] == \
        sorted(e.done for e in side_by_side if isinstance(e, SegmentDone))
    assert any(isinstance(e, BatchLines) for e in side_by_side)
    assert _comparable(side_by_side) == _comparable(one_at_a_time)
    assert not _lanes_alive()


class _TwoLanes(EchoEngine):
    """The echo engine with two lanes; `act(thread name)` runs before each batch. `most`: the
    most windows it ran at once."""

    lanes = 2

    def __init__(self, act):
        super().__init__(cap=2)
        self.act = act
        self.now = self.most = 0
        self._count = threading.Lock()

    @contextmanager
    def lane(self):
        with self._count:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self._count:
                self.now -= 1

    def transcribe_batch(self, audios, language="auto"):
        self.act(threading.current_thread().name)
        return super().transcribe_batch(audios, language)


FAST = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=10.0,
                       first_window_seconds=10.0)


class _Detecting(_TwoLanes):
    """Detects English in the inputs of the first batch it ever ran (window 0's) and French in the
    rest; a language given is kept."""

    def __init__(self):
        super().__init__(lambda thread: None)
        self.runs = []  # (thread, language asked) of each batch
        self.english: set[int] = set()  # sizes of window 0's inputs

    def transcribe_batch(self, audios, language="auto"):
        self.runs.append((threading.current_thread().name, language))
        self.english = self.english or {a.size for a in audios}
        found = "en" if audios[0].size in self.english else "fr"
        spoken = language if language not in ("", "auto") else found
        return [EngineOutput((LocalText(0.0, a.size / 16000, f"{spoken} len={a.size}"),), spoken) for a in audios]


def test_a_window_started_before_the_language_was_known_runs_again_when_it_found_another():
    engine = _Detecting()
    engine.lanes = 1
    one_at_a_time = list(transcribe(LONG, FAST, engine=engine))
    engine.lanes, engine.runs = 2, []
    side_by_side = list(transcribe(LONG, FAST, engine=engine))
    assert _comparable(side_by_side) == _comparable(one_at_a_time)
    assert {e.language for e in side_by_side if isinstance(e, WindowDone)} == {"en"}
    assert "fr" not in side_by_side[-1].transcript.text
    speculative = [r for r in engine.runs if r[0] == "window-1"]
    assert speculative and {r[1] for r in speculative} == {"auto"}  # it found French: thrown away,
    assert ("MainThread", "en") in engine.runs  # and window 1 ran again in English


def test_a_window_started_ahead_that_fails_raises_in_its_turn_after_the_windows_before_it():
    def act(thread):
        if thread == "window-2":
            raise RuntimeError("window 2 failed")

    seen = []
    with pytest.raises(RuntimeError, match="window 2 failed"):
        for event in transcribe(LONG, FAST, engine=_TwoLanes(act)):
            seen.append(event)
    assert [e.index for e in seen if isinstance(e, WindowDone)] == [0, 1]
    assert not _lanes_alive()


def test_a_cancel_stops_the_windows_started_ahead_too_and_keeps_the_text_done():
    cancel = threading.Event()
    threads = []
    engine = _TwoLanes(lambda thread: (threads.append(thread), time.sleep(0.05)))
    with pytest.raises(Cancelled) as stopped:
        for event in transcribe(LONG, FAST, engine=engine, cancel=cancel):
            if isinstance(event, WindowDone) and event.index == 0:
                cancel.set()  # windows 1 and 2 are running
    assert "window-1" in threads
    assert "len=" in stopped.value.partial.text  # window 0's text, and what the next one finished
    assert not _lanes_alive()


def test_a_caller_that_stops_reading_leaves_no_window_running():
    threads = []
    engine = _TwoLanes(lambda thread: (threads.append(thread), time.sleep(0.05)))
    events = transcribe(LONG, FAST, engine=engine)
    for event in events:
        if isinstance(event, WindowDone) and event.index == 1:
            break
    events.close()
    assert not _lanes_alive()
    assert any(thread.startswith("window-") for thread in threads)


def test_a_window_asked_for_after_a_cancel_runs_on_the_callers_thread_and_sees_it():
    from webui.modules.events import WindowCounts
    from webui.modules.lanes import Lanes

    cancel = threading.Event()
    cancel.set()  # between the run's own check and the window's start
    seen = []

    def steps(n, language, halt):
        seen.append((n, threading.current_thread().name, halt.is_set()))
        return WindowDone(n, (), language, WindowCounts())
        yield  # a generator, as transcribe_window is

    lanes = Lanes(_TwoLanes(lambda thread: None), [0, 1], steps, lambda done, language: True, cancel)
    window = lanes.window(0, "en")
    with pytest.raises(StopIteration) as finished:
        next(window)
    lanes.close()
    assert finished.value.value.index == 0
    assert seen == [(0, threading.current_thread().name, True)]


def test_no_more_windows_run_at_once_than_the_engine_has_lanes_while_the_first_is_slow():
    engine = _TwoLanes(lambda thread: time.sleep(0.3 if thread == "window-0" else 0.01))
    one_segment_each = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=5.0,
                                       first_window_seconds=5.0)
    events = list(transcribe(LONG, one_segment_each, engine=engine))
    assert len([e for e in events if isinstance(e, WindowDone)]) >= 4
    assert engine.most == 2
