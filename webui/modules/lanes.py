"""Windows side by side: with an engine of two CPU workers (WhisperEngine.lanes), the next window
runs beside the current one on its own thread, so that neither worker waits while the other
finishes a window's lone work (a resumed decode of one input, a second pass of one input, a
window of one input). Events still come out in window order, and each window's text is what it
would be alone: the engine runs the same calls on the same rows either way (WhisperEngine.lane).

The language is detected once, then kept: a window runs with the language the windows before it
found. A window started before that was known detects its own; its text stands only where
`agrees` says it is what the known language gives (the same language detected, or each input
decoded in the language it would be with the known one, and the same inputs), else the window
runs again with it. So the first two windows start together, and the output is
the one a window-at-a-time run gives.
"""

from __future__ import annotations

import queue
import threading
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable, ContextManager, Generator

from .engines.base import Engine
from .events import WindowDone
from .script import is_known

# (window, language, cancel) -> the window's events, returning its WindowDone (windows.transcribe_window)
WindowSteps = Callable[[int, str, "Halt"], Generator[object, None, WindowDone]]
# (a window run before the language was known, the language known now) -> whether its text is
# the one that language gives
Agrees = Callable[[WindowDone, str], bool]


class Halt:
    """What a window checks between batches (it only calls is_set): the caller's cancel, or the
    run's own stop when it ends before a window started ahead is done."""

    def __init__(self, cancel: threading.Event | None) -> None:
        self.cancel = cancel
        self.own = threading.Event()

    def is_set(self) -> bool:
        return self.own.is_set() or (self.cancel is not None and self.cancel.is_set())


@dataclass(frozen=True)
class _Finished:
    done: WindowDone


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _Lane(threading.Thread):
    """One window run on its own thread; its events wait in a queue until their turn.
    `ended()` is called on this thread once it has run (the next window may start)."""

    def __init__(self, n: int, language: str, steps: Generator[object, None, WindowDone], held: ContextManager,
                 ended: Callable[[], None]) -> None:
        super().__init__(name=f"window-{n}", daemon=True)
        self.language, self._steps, self._held, self._ended = language, steps, held, ended
        self._events: queue.Queue = queue.Queue()
        self.running = True

    def run(self) -> None:
        try:
            with self._held:
                while True:
                    try:
                        self._events.put(next(self._steps))
                    except StopIteration as finished:
                        self._events.put(_Finished(finished.value))
                        return
        except BaseException as exc:  # raised in the caller's thread when this window's turn comes
            self._events.put(_Failed(exc))
        finally:
            self.running = False
            self._ended()

    def relay(self) -> Generator[object, None, WindowDone]:
        while True:
            item = self._events.get()
            if isinstance(item, _Finished):
                return item.done
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def collected(self) -> tuple[list, WindowDone]:
        """All its events once it is done (its error raised)."""
        events: list = []
        relay = self.relay()
        while True:
            try:
                events.append(next(relay))
            except StopIteration as finished:
                return events, finished.value


class Lanes:
    """Runs a recording's windows (`todo`, in order) `engine.lanes` at a time where the engine
    allows it, one after another otherwise. A window starts as soon as a lane is free (its
    text waits for its turn), at most two widths ahead of the window being handed out.
    `close()` stops and waits for every window started (each finishes the batch it is in)."""

    def __init__(self, engine: Engine, todo: list[int], steps: WindowSteps, agrees: Agrees,
                 cancel: threading.Event | None) -> None:
        self._width = max(1, int(getattr(engine, "lanes", 1)))
        self._lane = getattr(engine, "lane", None) or nullcontext
        self._steps, self._agrees = steps, agrees
        self._halt = Halt(cancel)
        self._waiting = list(todo)      # not started, in order
        self._lanes: dict[int, _Lane] = {}  # started, not handed out yet
        self._started: list[_Lane] = []
        self._language = ""             # what the windows handed out so far found
        self._lock = threading.Lock()

    def window(self, n: int, language: str) -> Generator[object, None, WindowDone]:
        """Window n's events as they come (a window started earlier: first what it has queued),
        returning its WindowDone. `language`: what the windows before it found."""
        if self._width < 2:
            return (yield from self._alone(n, language))
        with self._lock:
            self._language = language
            self._fill()
            lane = self._lanes.pop(n, None)
        if lane is None:  # a cancel came first: nothing starts now; the window sees it at once
            return (yield from self._alone(n, language))
        if lane.language == language or not is_known(language):
            return (yield from lane.relay())
        events, done = lane.collected()  # started before the language was known
        if not self._agrees(done, language):
            return (yield from self._alone(n, language))
        yield from events
        return replace(done, language=language)  # what it found stands; the recording's stays

    def _alone(self, n: int, language: str) -> Generator[object, None, WindowDone]:
        with self._lane():
            return (yield from self._steps(n, language, self._halt))

    def _fill(self) -> None:
        """Start the next windows while a lane is free (under the lock)."""
        while self._waiting and not self._halt.is_set() and len(self._lanes) < 2 * self._width \
                and sum(lane.running for lane in self._started) < self._width:  # the one handed out too
            n = self._waiting.pop(0)
            lane = _Lane(n, self._language, self._steps(n, self._language, self._halt), self._lane(), self._ended)
            self._lanes[n] = lane
            self._started.append(lane)
            lane.start()

    def _ended(self) -> None:
        with self._lock:
            self._fill()

    def close(self) -> None:
        with self._lock:
            self._halt.own.set()
            started = list(self._started)
        for lane in started:
            lane.join()
        self._lanes.clear()
