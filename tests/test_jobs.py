"""The job queue without Gradio: real pipeline, real History, a real model for one clip and a
controllable fake engine for ordering, cancelling and failure handling."""

from __future__ import annotations

import csv
import json
import threading
import time
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from tests.conftest import DATA
from webui.modules.engines.base import EngineError, EngineOutput, EngineSettings, LocalText
from webui.modules.history import History
from webui.modules.vad_view import engine_cap_for, inspect_vad
from webui.modules.jobs import (
    CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobQueue,
)
from webui.modules.audio import InputError, list_media
from webui.modules.exports import write_batch_outputs, write_transcript_files
from webui.modules.options import PipelineOptions

JFK = DATA / "jfk.flac"
SHORT = DATA / "english.wav"          # 2.7 s
SHORT2 = DATA / "goforward.wav"       # 2.8 s
LONG = DATA / "two_cities.wav"        # 44 s: several segments
# The fake engine's one-line answers are far too short for real speech; without retry_tail=0
# the pipeline's second pass would (rightly) run every utterance again.
OPTIONS = PipelineOptions(engine=EngineSettings(device="cpu"), itn=False, retry_tail_seconds=0.0)


class Gate:
    """Holds engine batches: `allow(n)` lets n through, `set()` opens it for all, `close()` shuts it."""

    def __init__(self) -> None:
        self._permits = threading.Semaphore(0)
        self._open = threading.Event()

    def allow(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()

    def set(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._open.is_set() or self._permits.acquire(timeout=0.02):
                return True
        return False


class FakeEngine:
    """Implements the Engine protocol; says which call it was. `gate` (if given) holds each
    batch until the test lets it through, so a test can look at a job while it runs."""

    def __init__(self, gate: Gate | None = None, fail_with: Exception | None = None,
                 max_input_seconds: float = 30.0):
        self.name = "fake"
        self.device = "cpu"
        self.max_input_seconds = max_input_seconds
        self.gate = gate
        self.fail_with = fail_with
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.started = threading.Event()
        self._lock = threading.Lock()

    def batch_limit(self, padded_seconds: float) -> int:
        return 1

    def transcribe_batch(self, audios: Sequence[np.ndarray], language: str = "auto") -> list[EngineOutput]:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            call = self.calls
        self.started.set()
        try:
            if self.gate is not None:
                assert self.gate.wait(30), "test gate never opened"
            if self.fail_with is not None:
                raise self.fail_with
            return [EngineOutput((LocalText(0.0, a.size / 16000, f"call {call} item {i}"),), "en")
                    for i, a in enumerate(audios)]
        finally:
            with self._lock:
                self.active -= 1

    def release(self) -> None:
        pass

    def unload(self) -> None:
        pass


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "history.db")


def make_queue(history: History, engine) -> JobQueue:
    return JobQueue(history, engine_factory=lambda settings: engine)


def test_real_model_transcribes_jfk_and_history_records_it(history: History, whisper_engine) -> None:
    queue = make_queue(history, whisper_engine)
    try:
        job_id = queue.submit(JFK, OPTIONS, owner="alice")
        state = queue.wait(job_id, timeout=120)
        assert state.status == DONE, state.error
        assert "ask not what your country can do for you" in state.transcript.text.lower()
        assert state.percent == 100.0 and state.segments and state.duration == pytest.approx(11.0, abs=0.1)
        assert state.owner == "alice" and state.started_at and state.finished_at >= state.started_at
        record = history.get(state.history_id)
        assert record.status == "done" and record.file_name == "jfk.flac"
        assert "ask not what your country" in record.text.lower()
        assert record.started_at and record.finished_at and record.segments
        assert record.model == "whisper-base" and record.settings["engine"]["device"] == "cpu"
        assert [r.id for r in history.search("country")] == [state.history_id]
    finally:
        queue.shutdown()


def test_jobs_run_one_at_a_time_in_submission_order(history: History) -> None:
    gate = Gate()
    engine = FakeEngine(gate)
    queue = make_queue(history, engine)
    try:
        ids = [queue.submit(p, OPTIONS, owner=f"user{i}") for i, p in enumerate((SHORT, SHORT2, JFK))]
        assert engine.started.wait(10)
        first, second, third = (queue.get(i) for i in ids)
        assert first.status == RUNNING and first.position == 0
        assert (second.status, second.position, third.status, third.position) == (QUEUED, 1, QUEUED, 2)
        assert (second.ahead, third.ahead) == (1, 2)
        assert second.message == "1 job ahead" and third.message == "2 jobs ahead"
        assert queue.queue_length() == 3 and queue.waiting() == 2
        assert history.get(second.history_id).status == "queued"
        assert history.get(first.history_id).status == "running"
        gate.set()
        finals = [queue.wait(i, timeout=30) for i in ids]
        assert [s.status for s in finals] == [DONE, DONE, DONE]
        assert engine.max_active == 1  # the GPU never saw two jobs at once
        # Finished in the order they were submitted.
        assert finals[0].finished_at <= finals[1].started_at and finals[1].finished_at <= finals[2].started_at
        assert [s.transcript.text for s in finals] == ["call 1 item 0", "call 2 item 0", "call 3 item 0"]
        assert queue.queue_length() == 0
        assert {history.get(s.history_id).status for s in finals} == {"done"}
    finally:
        gate.set()
        queue.shutdown()


def test_two_submitters_from_threads_both_finish_in_order(history: History) -> None:
    engine = FakeEngine()
    queue = make_queue(history, engine)
    ids: dict[str, list[str]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def submitter(name: str, path: Path) -> None:
        barrier.wait()
        for _ in range(3):
            ids[name].append(queue.submit(path, OPTIONS, owner=name))

    try:
        threads = [threading.Thread(target=submitter, args=(n, p)) for n, p in (("a", SHORT), ("b", SHORT2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        everything = ids["a"] + ids["b"]
        finals = {i: queue.wait(i, timeout=60) for i in everything}
        assert all(s.status == DONE for s in finals.values())
        assert engine.max_active == 1
        for name in ("a", "b"):  # each submitter's jobs ran in the order that submitter sent them
            starts = [finals[i].started_at for i in ids[name]]
            assert starts == sorted(starts)
        assert {s.owner for s in queue.jobs(owner="a")} == {"a"} and len(queue.jobs(owner="b")) == 3
        assert history.count() == 6 and len(history.search(status="done")) == 6  # nothing lost
    finally:
        queue.shutdown()


def test_cancel_a_waiting_job_removes_it_and_a_running_one_keeps_its_partial_text(history: History) -> None:
    gate = Gate()
    engine = FakeEngine(gate)
    queue = make_queue(history, engine)
    try:
        running = queue.submit(LONG, OPTIONS)
        waiting = queue.submit(SHORT, OPTIONS)
        after = queue.submit(SHORT2, OPTIONS)
        assert engine.started.wait(10)
        assert queue.cancel(waiting)
        state = queue.get(waiting)
        assert state.status == CANCELLED and state.finished
        assert history.get(state.history_id).status == "cancelled"
        assert queue.get(after).position == 1  # moved up
        assert queue.cancel(running)  # stops after the batch in flight
        gate.set()
        state = queue.wait(running, timeout=30)
        assert state.status == CANCELLED
        assert state.transcript is not None and state.transcript.segments  # the finished part is kept
        record = history.get(state.history_id)
        assert record.status == "cancelled" and "cancel" in record.error
        assert record.text == state.transcript.text and record.segments  # History keeps it too
        assert queue.wait(after, timeout=30).status == DONE  # the queue goes on
        assert not queue.cancel(after)  # finished jobs cannot be cancelled
        assert not queue.cancel("no-such-job")
    finally:
        gate.set()
        queue.shutdown()


def test_bad_input_is_refused_at_submit_and_history_is_untouched(history: History, tmp_path: Path) -> None:
    queue = make_queue(history, FakeEngine())
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio at all\n" * 50)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    try:
        for path, reason in ((bogus, "not a readable audio"), (empty, "empty"), (tmp_path / "gone.wav", "not found")):
            with pytest.raises(InputError, match=reason):
                queue.submit(path, OPTIONS)
        assert history.count() == 0 and queue.jobs() == []
        ok = queue.submit(SHORT, OPTIONS)  # the queue still works
        assert queue.wait(ok, timeout=30).status == DONE
    finally:
        queue.shutdown()


def test_model_and_unexpected_errors_fail_the_job_but_not_the_worker(history: History) -> None:
    engines = iter([EngineError("model folder /x has no model.pt"), FakeEngine(fail_with=RuntimeError("boom")),
                    FakeEngine()])

    def factory(settings):
        item = next(engines)
        if isinstance(item, Exception):
            raise item
        return item

    queue = JobQueue(history, engine_factory=factory)
    try:
        ids = [queue.submit(SHORT, OPTIONS) for _ in range(3)]
        states = [queue.wait(i, timeout=30) for i in ids]
        assert [s.status for s in states] == [FAILED, FAILED, DONE]
        assert states[0].error.startswith("Model problem:") and "model.pt" in states[0].error
        assert "boom" in states[1].error and "RuntimeError" in states[1].error
        records = [history.get(s.history_id) for s in states]
        assert [r.status for r in records] == ["failed", "failed", "done"]
        assert "model.pt" in records[0].error
    finally:
        queue.shutdown()


def test_input_error_during_the_run_is_a_clear_failure(history: History) -> None:
    # Probing passed, but decoding fails midway (a damaged file): the pipeline raises InputError.
    def broken_transcribe(path, options, engine=None, cancel=None):
        raise InputError(path, "could not decode audio (Invalid data found when processing input)")
        yield  # pragma: no cover - makes this a generator like the real one

    queue = JobQueue(history, engine_factory=lambda s: FakeEngine(), transcribe_fn=broken_transcribe)
    try:
        state = queue.wait(queue.submit(SHORT, OPTIONS), timeout=30)
        assert state.status == FAILED
        assert state.error == "Cannot transcribe english.wav: could not decode audio (Invalid data found when processing input)"
        assert history.get(state.history_id).status == "failed"
    finally:
        queue.shutdown()


def test_progress_percent_and_eta_come_from_the_job(history: History) -> None:
    gate = Gate()
    engine = FakeEngine(gate)
    queue = make_queue(history, engine)
    # Small windows so each segment reports as it finishes; short segments so there are several.
    options = PipelineOptions(engine=EngineSettings(device="cpu"), itn=False, window_seconds=5.0,
                              retry_tail_seconds=0.0, pack=False, max_segment=10.0)
    try:
        job = queue.submit(LONG, options)
        assert engine.started.wait(10)
        state = queue.get(job)
        assert state.status == RUNNING and state.segments_done == 0 and state.percent < 10
        gate.allow(1)  # the first segment only
        deadline = time.monotonic() + 30
        while queue.get(job).segments_done < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        state = queue.get(job)
        assert state.status == RUNNING and 1 == state.segments_done < state.segments_total
        assert 5 < state.percent < 100 and state.percent == pytest.approx(100 * state.audio_done / state.duration, abs=0.5)
        assert state.eta_seconds is None  # one batch is no rate yet: it carries the model's warm-up
        assert [s.text for s in state.segments] == ["call 1 item 0"]  # segments appear as they finish
        gate.allow(1)  # a second batch: now the job has a rate of its own
        while queue.get(job).segments_done < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        state = queue.get(job)
        assert state.eta_seconds is not None and state.eta_seconds >= 0
        gate.set()
        final = queue.wait(job, timeout=60)
        assert final.status == DONE and final.percent == 100.0 and final.segments_total >= 2
        # After one finished job the queue knows its speed, so a waiting job gets an estimate too.
        gate.close()
        blocker = queue.submit(SHORT, options)
        waiting = queue.submit(SHORT2, options)
        assert queue.get(waiting).eta_seconds is not None
        gate.set()
        queue.wait(blocker, timeout=30)
        queue.wait(waiting, timeout=30)
    finally:
        gate.set()
        queue.shutdown()


def test_unload_waits_for_an_idle_queue(history: History) -> None:
    gate = Gate()
    engine = FakeEngine(gate)
    queue = make_queue(history, engine)
    calls = []
    try:
        job = queue.submit(SHORT, OPTIONS)
        assert engine.started.wait(10)
        ok, message = queue.unload_model(lambda: calls.append(1) or True)
        assert not ok and "running" in message and calls == []
        gate.set()
        queue.wait(job, timeout=30)
        ok, message = queue.unload_model(lambda: calls.append(1) or True)
        assert ok and message == "Model unloaded." and calls == [1]
    finally:
        gate.set()
        queue.shutdown()


def test_transcript_files_and_batch_summary(history: History, tmp_path: Path) -> None:
    queue = make_queue(history, FakeEngine())
    try:
        ids = [queue.submit(p, OPTIONS, group="g1") for p in (SHORT, SHORT2, SHORT)]  # a duplicate name too
        states = [queue.wait(i, timeout=30) for i in ids]
        assert queue.cancel_group("g1") == 0
    finally:
        queue.shutdown()
    files = write_transcript_files(states[0].transcript, tmp_path / "one", "english.wav")
    assert sorted(files) == ["json", "srt", "txt", "vtt"]
    assert files["srt"].read_text().startswith("1\n00:00:")
    assert files["vtt"].read_text().startswith("WEBVTT")
    out = write_batch_outputs(states, tmp_path / "batch", extra_rows=[{"file": "bad.wav", "error": "empty"}])
    rows = list(csv.DictReader(out["csv"].open(encoding="utf-8")))
    assert [r["file"] for r in rows] == ["english.wav", "goforward.wav", "english.wav", "bad.wav"]
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed"]
    assert rows[0]["history_id"] == str(states[0].history_id)
    summary = json.loads(out["json"].read_text(encoding="utf-8"))
    assert summary[3]["error"] == "empty" and summary[0]["characters"] > 0
    with zipfile.ZipFile(out["zip"]) as archive:
        names = set(archive.namelist())
        assert {"english.srt", "english_2.srt", "goforward.json", "summary.csv"} <= names
        assert archive.read("english.srt").decode().startswith("1\n00:00:")


def test_list_media_picks_audio_and_video_only(tmp_path: Path) -> None:
    for name in ("b.WAV", "a.mp3", "c.mp4", "notes.txt", "d.flac"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.wav").mkdir()
    assert [p.name for p in list_media(tmp_path)] == ["a.mp3", "b.WAV", "c.mp4", "d.flac"]


def test_vad_inspection_runs_without_a_model() -> None:
    cap = engine_cap_for(EngineSettings())
    assert cap == 30.0  # the bundled Whisper takes 30 s, known without loading it
    result = inspect_vad(LONG, PipelineOptions(), cap)
    assert result.max_seconds == 30.0
    assert len(result.segments) >= 2 and max(result.lengths) <= 30.0 + 1e-6
    assert result.segments[0].segment.start == 0.0
    assert result.segments[-1].segment.end == pytest.approx(result.info.duration, abs=0.01)
    assert 10.0 < result.speech_seconds <= result.info.duration
    assert all(v.spans for v in result.segments)
    assert result.peaks.size > 100 and 0.05 < float(result.peaks.max()) <= 1.0
    fixed = inspect_vad(LONG, PipelineOptions(max_segment=20.0), None)
    assert fixed.max_seconds == 20.0 and max(fixed.lengths) <= 20.0 + 1e-6


def test_old_jobs_are_forgotten_but_not_those_of_a_running_batch(history: History) -> None:
    gate = Gate()
    engine = FakeEngine(gate)
    queue = JobQueue(history, engine_factory=lambda s: engine, keep_finished=1)
    try:
        gate.set()
        lone = queue.wait(queue.submit(SHORT, OPTIONS), timeout=30)
        gate.close()
        first, second = (queue.submit(SHORT, OPTIONS, group="batch") for _ in range(2))
        gate.allow(1)
        queue.wait(first, timeout=30)
        queue.submit(SHORT2, OPTIONS)  # submitting prunes
        assert queue.get(lone.id) is None  # forgotten (History keeps it)
        assert queue.get(first).status == DONE  # kept: its batch is still running
        assert history.get(lone.history_id).status == "done"
        gate.set()
        assert queue.wait(second, timeout=30).status == DONE
    finally:
        gate.set()
        queue.shutdown()
