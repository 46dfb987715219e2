"""Honest progress: the ETA rules of progress.EtaEstimator on recorded event sequences (a cold
start, a warm start, a resume, a batch of many files), and how a job folds events into one
counter, a preview of each batch's lines and the time of a resumed job."""

from __future__ import annotations

import json
import time

import pytest

from webui.modules.events import Finished, Progress, RunStats, SegmentDone, WindowDone, WindowCounts
from webui.modules.job_state import RUNNING, Job
from webui.modules.options import PipelineOptions
from webui.modules.progress import EtaEstimator, GroupMeters, work_line
from webui.modules.transcript import Segment, SegmentResult, TimedText, Transcript
from webui.modules.windows import BatchLines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replay(meter: EtaEstimator, clock: Clock, events, look_every: float = 0.5) -> list[tuple[float, float | None]]:
    """Feed (wall seconds later, audio seconds done) events; returns (time, eta) as a page polling
    every `look_every` seconds would have seen them."""
    seen = []
    for gap, done in events:
        end = clock.now + gap
        while clock.now + look_every < end:
            clock.now += look_every
            seen.append((clock.now, meter.eta()))
        clock.now = end
        meter.advance(done)
        seen.append((clock.now, meter.eta()))
    return seen


def never_rises(seen) -> None:
    figures = [eta for _, eta in seen if eta is not None]
    rises = [(a, b) for a, b in zip(figures, figures[1:]) if b > a + 1e-9]
    assert not rises, f"the ETA rose: {rises[:5]}"


# A 18:41 (1121 s) recording on a 2-core CPU, as the run reported it: batches of ~2 min
# of audio, each 25-40 s of work; the first one slower (the model warms up).
TOTAL = 1121.0


def steady(start: float, step: float, seconds_per_batch: float, jitter=(1.0, 1.15, 0.9, 1.05)):
    done, events = start, []
    i = 0
    while done < TOTAL:
        done = min(TOTAL, done + step)
        events.append((seconds_per_batch * jitter[i % len(jitter)], done))
        i += 1
    return events


def test_cold_start_no_figure_before_a_rate_then_never_rising() -> None:
    clock = Clock()
    meter = EtaEstimator(TOTAL, clock)
    assert meter.eta() is None  # nothing done: no figure, whatever earlier jobs did
    clock.now += 20.0  # loading the model and finding silences: not transcription
    meter.begin(0.0)
    assert meter.eta() is None
    events = [(75.0, 30.0)] + steady(30.0, 120.0, 32.0)  # the first (30 s) window on a cold model
    seen = replay(meter, clock, events)
    never_rises(seen)
    first_at, first = next((t, eta) for t, eta in seen if eta is not None)
    assert first_at - 1020.0 == 75.0 + events[1][0]  # after the second batch: the first carries the warm-up
    truth = sum(gap for gap, _ in events[2:])
    assert first == pytest.approx(truth, rel=0.2)  # not the hour a warm-up batch would have suggested
    # Halfway through, the figure is within 25 % of what the rest really took.
    halfway = next(i for i, (_, done) in enumerate(events) if done >= TOTAL / 2)
    left = sum(gap for gap, _ in events[halfway + 1:])
    at = 1000.0 + 20.0 + sum(gap for gap, _ in events[:halfway + 1])
    eta = min(seen, key=lambda s: abs(s[0] - at))[1]
    assert eta == pytest.approx(left, rel=0.25)
    assert seen[-1][1] == 0.0


def test_warm_start_gets_a_sane_first_figure_not_an_hour() -> None:
    """The issue: a warm second run said 'ETA 1:01:36' at 2 % and took about 2 minutes. Here the
    first figure comes from the first batch of this run, and it is near the truth."""
    clock = Clock()
    meter = EtaEstimator(TOTAL, clock)
    meter.begin(0.0)
    events = steady(0.0, 140.0, 14.0)  # ~2 minutes in all
    seen = replay(meter, clock, events)
    never_rises(seen)
    figures = [eta for _, eta in seen if eta is not None]
    assert figures[0] < 180 and figures[0] == pytest.approx(sum(g for g, _ in events[2:]), rel=0.3)


def test_resume_measures_only_the_new_work() -> None:
    """A resumed job replays 10 minutes of audio from its checkpoint in no time; that must not
    make the rate look fast (an ETA of seconds that then sits there)."""
    clock = Clock()
    meter = EtaEstimator(TOTAL, clock)
    meter.begin(0.0)
    meter.advance(600.0)  # the replay...
    meter.begin(600.0)    # ...and the job begins measuring after it (Job.apply does this)
    assert meter.eta() is None
    events = steady(600.0, 120.0, 30.0)
    seen = replay(meter, clock, events)
    never_rises(seen)
    first = next(eta for _, eta in seen if eta is not None)
    assert first == pytest.approx(sum(g for g, _ in events[2:]), rel=0.3)  # not ~0


def test_a_stall_drops_the_figure_and_a_slower_pace_never_raises_it() -> None:
    clock = Clock()
    meter = EtaEstimator(TOTAL, clock, min_stall=45.0)
    meter.begin(0.0)
    replay(meter, clock, steady(0.0, 100.0, 20.0)[:4])
    before = meter.eta()
    assert before is not None
    clock.now += 30.0
    assert meter.eta() == before  # waiting for the next batch: the figure stays, it does not grow
    clock.now += 60.0  # 90 s without progress, where batches took 20: stalled
    assert meter.eta() is None
    meter.advance(500.0)
    assert meter.eta() is not None  # a fresh figure once work goes on
    # Slower batches: the cumulative rate drops, yet the figure shown does not rise.
    seen = replay(meter, clock, [(40.0, 560.0), (45.0, 620.0), (50.0, 680.0)])
    never_rises(seen)


def test_batch_of_many_files_one_meter_over_the_batch() -> None:
    """Twelve 90-s files: each one's scan is a pause between its batches; the batch ETA needs the
    first audio done, then never rises and ends at zero. ('ETA 0:00 at 7 %' came from estimating
    a file's time from earlier jobs and subtracting the time it had run.)"""
    clock = Clock()
    meters = GroupMeters(clock)
    files, length = 12, 90.0
    total = files * length
    assert meters.update("g", total, 0.0, working=False) is None  # nothing started
    seen, done = [], 0.0
    for _ in range(files):
        clock.now += 6.0  # loading and scanning the next file
        seen.append(meters.update("g", total, done, working=True))
        for _ in range(3):
            clock.now += 5.0
            done += length / 3
            seen.append(meters.update("g", total, done, working=True))
            clock.now += 0.5
            seen.append(meters.update("g", total, done, working=True))
    assert seen[0] is None
    figures = [eta for eta in seen if eta is not None]
    assert all(b <= a + 1e-9 for a, b in zip(figures, figures[1:]))
    assert figures[0] == pytest.approx(files * 21.0, rel=0.35)  # 12 files × (6 + 15) s
    assert figures[-1] == 0.0


def test_the_counter_reads_audio_done_of_the_total() -> None:
    assert work_line(252.0, 1121.0) == "4:12 of 18:41 of audio (22%)"
    assert work_line(0.0, 0.0) == "0:00 of 0:00 of audio (0%)"


# --- the job: events folded into one counter, a preview, the time of a resumed job ----------

def piece(start: float, end: float, text: str) -> TimedText:
    return TimedText(start, end, text)


def result(index: int, start: float, end: float, *pieces: TimedText) -> SegmentResult:
    return SegmentResult(Segment(index, start, end), tuple(pieces), end - start, "en")


def make_job(duration: float = 120.0) -> Job:
    job = Job(id="1-1", path="/tmp/x.wav", file_name="x.wav", options=PipelineOptions(), owner="", group="",
              duration=duration, model="m")
    job.status, job.started_at = RUNNING, time.time()
    return job


def test_a_job_counts_audio_shows_each_batch_at_once_and_ends_with_the_final_lines() -> None:
    job = make_job()
    job.apply(Progress("scan", 0, 1))
    job.apply(Progress("scan", 1, 1))
    assert job.snapshot(0, 0, 999.0, "").eta_seconds is None  # no rate yet: earlier jobs' 999 s not shown
    job.apply(Progress("transcribe", 20.0, 120.0))
    job.apply(BatchLines(0, (result(0, 10, 20, piece(12, 15, "second")),), "en"))
    job.apply(BatchLines(0, (result(0, 0, 10, piece(1, 4, "first")),), "en"))
    state = job.snapshot(0, 0, None, "")
    assert state.audio_done == 20.0 and state.percent == pytest.approx(16.7, abs=0.1)
    assert [p.text for p in state.lines] == ["first", "second"]  # in time order, before the window is final
    assert state.segments == ()
    final = (result(0, 0, 10, piece(1, 4, "first")), result(1, 10, 20, piece(12, 15, "second, revised")))
    for r in final:
        job.apply(SegmentDone(r, 1, 2))
    job.apply(WindowDone(0, final, "en", WindowCounts()))
    state = job.snapshot(0, 0, None, "")
    assert [p.text for p in state.lines] == ["first", "second, revised"]  # the preview is gone
    assert state.percent == pytest.approx(16.7, abs=0.1)  # replayed SegmentDone do not move the counter here
    transcript = Transcript("x.wav", 120.0, "m", segments=[p for r in final for p in r.pieces])
    job.apply(Finished(transcript, RunStats()))
    assert [p.text for p in job.snapshot(0, 0, None, "").lines] == ["first", "second, revised"]


def test_a_resumed_job_counts_the_time_before_the_restart_and_measures_after_the_replay() -> None:
    job = make_job(600.0)
    job.prior_seconds = 300.0  # from its checkpoint
    job.started_at = time.time() - 60.0
    job.apply(Progress("scan", 1, 1))
    job.apply(SegmentDone(result(0, 0, 300, piece(0, 300, "replayed")), 1, 2))  # from the checkpoint
    state = job.snapshot(0, 0, None, "")
    assert state.audio_done == 300.0 and state.eta_seconds is None  # replayed audio is no rate
    assert state.elapsed == pytest.approx(360.0, abs=2.0)  # the whole job's time, not the last minute
    job.finished_at = job.started_at + 100.0
    assert job.snapshot(0, 0, None, "").elapsed == pytest.approx(400.0)


def test_a_resumed_job_in_the_queue_gets_its_earlier_seconds_back_from_the_checkpoint(tmp_path) -> None:
    """The elapsed seconds travel in each checkpointed window (job_records), so '18:41 of audio in
    1:16' after a restart counts the work before it too."""
    from tests.fakes import EchoEngine
    from tests.test_checkpoint import LONG, OPTIONS, run
    from webui.modules import checkpoint
    from webui.modules.history import History
    from webui.modules.job_records import _Checkpoint
    from webui.modules.jobs import DONE, JobQueue

    history = History(tmp_path / "history.db")
    job = history.create_job(LONG.name, str(LONG), "echo", json.loads(json.dumps(_record(OPTIONS))))
    history.mark_running(job)
    sidecar = checkpoint.Sidecar(tmp_path / "c.jsonl")
    run(LONG, store=sidecar)
    head, windows = sidecar.load()
    store = _Checkpoint(history, job, lambda: 95.0)  # the killed run had worked 95 s by then
    store.begin(head)
    store.add(windows[0])
    assert history.checkpoint(job)[1][0]["elapsed"] == 95.0
    queue = JobQueue(history, engine_factory=lambda s: EchoEngine())
    try:
        assert queue.resume_unfinished() == 1
        state = queue.wait(queue.jobs()[0].id, timeout=60)
    finally:
        queue.shutdown()
    assert state.status == DONE and state.stats.resumed_windows == 1
    assert state.prior_seconds == 95.0 and 95.0 <= state.elapsed < 95.0 + 60


def _record(options):
    from webui.modules.job_state import options_record

    return options_record(options)


def test_each_batch_streams_its_lines_and_the_final_transcript_is_unchanged() -> None:
    """Lines arrive after every batch (BatchLines), not only after a window's last batch, and
    the transcript is the same as before streaming existed (every window's SegmentDone)."""
    from tests.fakes import EchoEngine
    from tests.test_checkpoint import LONG
    from webui.modules.pipeline import transcribe

    options = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=60.0,
                              first_window_seconds=60.0, pack=False)
    engine = EchoEngine(cap=1)
    events = list(transcribe(LONG, options, engine=engine))
    batches = [e for e in events if isinstance(e, BatchLines)]
    assert len(batches) == len(engine.batches) >= 3  # one event per batch...
    first_done = next(i for i, e in enumerate(events) if isinstance(e, SegmentDone))
    assert sum(isinstance(e, BatchLines) for e in events[:first_done]) >= 3  # ...long before the window ends
    streamed = sorted((p for b in batches for r in b.results for p in r.pieces), key=lambda p: p.start)
    final = events[-1].transcript
    assert isinstance(events[-1], Finished)
    assert [(p.start, p.end, p.text) for p in streamed] == [(p.start, p.end, p.text) for p in final.segments]
    assert [p.text for p in final.segments] == [p.text for e in events if isinstance(e, SegmentDone)
                                               for p in e.result.pieces]
