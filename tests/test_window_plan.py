"""Window ends chosen where the packed speech fills the last model input (window_plan.py), on
real speech clips with telephone-prompt pauses (0.6-3 s)."""

import numpy as np
import pytest

from tests.recordings import build
from webui.modules import pipeline
from webui.modules.chunks import input_counts, make_chunk, pack
from webui.modules.options import PipelineOptions
from webui.modules.segment import plan_windows
from webui.modules.spool import Spool
from webui.modules.transcript import Segment
from webui.modules.vads import VadOptions
from webui.modules.window_plan import SLACK, filled_windows

WINDOW = 120.0  # seconds: five minutes of speech make a few windows


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("window_plan") / "prompts.flac"
    build(path, 5.0, seed=2, gap=(0.6, 3.0))
    return path


@pytest.fixture(scope="module")
def planned(recording):
    path = recording
    options = PipelineOptions(window_seconds=WINDOW)
    with Spool() as spool:
        plan = pipeline.plan(path, options, 30.0, "cpu", spool)
        chunks = [make_chunk(s, spool.read(s.start, s.end), options.vad) for s in plan.segments]
        yield plan, chunks, options


def _inputs(windows, chunks) -> int:
    return sum(sum(1 for c in pack(chunks[a:b], 30.0, VadOptions().keep_gap) if c.spans) for a, b in windows)


def test_windows_that_fill_their_last_input_take_fewer_inputs_than_windows_of_a_fixed_length(planned):
    plan, chunks, options = planned
    fixed = plan_windows(plan.segments, options.first_window_seconds, WINDOW)
    assert _inputs(plan.windows, chunks) < _inputs(fixed, chunks)  # 8 against 9 here
    # Every segment in exactly one window, in order.
    assert plan.windows[0][0] == 0 and plan.windows[-1][1] == len(plan.segments)
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(plan.windows, plan.windows[1:]))
    # Each window but the last is about as long as planned: within the slack, or at the fixed end
    # (the first may also run on while its speech still fills one input: see below).
    for k, (a, b) in enumerate(plan.windows[:-1]):
        target = WINDOW if k else options.first_window_seconds
        length = plan.segments[b - 1].end - plan.segments[a].start
        fixed_end = plan_windows(plan.segments[a:], target, target)[0][1] + a
        assert target * (1 - SLACK) <= length <= target * (1 + SLACK) or b == fixed_end \
            or (not k and _inputs([(a, b)], chunks) == 1)


def _sparse(seconds_each: float, count: int, voiced: float):
    """`count` segments of `seconds_each`, each holding `voiced` seconds of a tone (speech to the
    energy VAD, Silero's voice check off) after a second of quiet."""
    segments = [Segment(i, seconds_each * i, seconds_each * (i + 1)) for i in range(count)]
    t = np.arange(int(seconds_each * 16000)) / 16000
    one = np.where((t >= 1.0) & (t < 1.0 + voiced), 0.3 * np.sin(2 * np.pi * 220 * t), 0.0).astype(np.float32)
    return segments, lambda start, end: one[:int(round((end - start) * 16000))].copy()


def test_the_first_window_runs_on_while_its_speech_fills_one_input(monkeypatch):
    """Sparse speech (6 s in every 25 s): a first window of 30 s of audio would hold one input
    with a fifth of it used. It runs on to 100 s, one input filled, and the recording takes one
    input fewer; still a single input, so the first text comes as soon."""
    from webui.modules import window_plan

    vad = VadOptions(voice_check=False)
    segments, read = _sparse(25.0, 12, 6.0)
    chunks = [make_chunk(s, read(s.start, s.end), vad) for s in segments]

    def inputs(windows) -> int:
        return sum(input_counts(chunks[a:b], 30.0, vad.keep_gap)[-1] for a, b in windows)

    windows = filled_windows(segments, read, vad, 30.0, 30.0, 100.0)
    assert input_counts(chunks[:windows[0][1]], 30.0, vad.keep_gap)[-1] == 1
    assert segments[windows[0][1] - 1].end >= 75.0  # not 25-50 s
    monkeypatch.setattr(window_plan, "_one_input_ends", lambda *args: [])  # the first window as before
    before = filled_windows(segments, read, vad, 30.0, 30.0, 100.0)
    assert segments[before[0][1] - 1].end <= 50.0
    assert inputs(windows) == inputs(before) - 1  # 3 against 4


def test_input_counts_are_what_pack_makes_of_each_run_of_chunks(planned):
    _, chunks, _ = planned
    counts = input_counts(chunks[:9], 30.0, 0.6)
    assert counts == [sum(1 for c in pack(chunks[:k + 1], 30.0, 0.6) if c.spans) for k in range(9)]
    assert counts[-1] > counts[0]


def test_the_rest_of_a_recording_joins_the_last_window_when_it_fits():
    segments = [Segment(i, 25.0 * i, 25.0 * (i + 1)) for i in range(5)]  # 125 s
    read = lambda start, end: np.zeros(int((end - start) * 16000), np.float32)  # noqa: E731
    # 125 s in 100-s windows: one window (fixed windows leave a 25-s one behind).
    assert filled_windows(segments, read, VadOptions(), 30.0, 100.0, 100.0) == ((0, 5),)
    assert plan_windows(segments, 100.0, 100.0) == ((0, 4), (4, 5))
    assert filled_windows([], read, VadOptions(), 30.0, 100.0, 100.0) == ()


def test_a_model_vad_or_inputs_by_utterance_keep_windows_of_a_fixed_length(planned):
    plan, _, options = planned
    fixed = plan_windows(plan.segments, options.first_window_seconds, WINDOW)
    assert plan.windows != fixed  # the check below could fail
    for other in (PipelineOptions(window_seconds=WINDOW, vad=VadOptions(backend="silero-vad")),
                  PipelineOptions(window_seconds=WINDOW, utterance_inputs=True),
                  PipelineOptions(window_seconds=WINDOW, pack=False)):
        with Spool() as spool:
            assert pipeline._windows(plan.segments, other, 30.0, spool, other.first_window_seconds, WINDOW) == fixed
    # Nor where the engine's input length is unknown (the VAD view before a model is loaded).
    with Spool() as spool:
        assert pipeline._windows(plan.segments, options, None, spool, options.first_window_seconds, WINDOW) == fixed


def test_the_plan_hears_segments_on_several_threads_and_plans_as_one_would(recording, planned, monkeypatch):
    """The segments are heard (VAD, Silero's voice check) on the cores at once, before the
    search; the windows are the ones a single thread plans."""
    import threading

    from webui.modules import window_plan

    plan, _, options = planned
    names = set()
    real = window_plan.speech_spans

    def heard(*args, **kwargs):
        names.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(window_plan, "speech_spans", heard)
    monkeypatch.setattr(window_plan.os, "cpu_count", lambda: 2)
    with Spool() as spool:
        pipeline.audio_mod.decode_into(recording, spool)
        together = filled_windows(plan.segments, spool.read, options.vad, 30.0, options.first_window_seconds, WINDOW)
        assert names and all(n.startswith("window-plan") for n in names)  # none on the caller's thread
        monkeypatch.setattr(window_plan, "HEARING_THREADS", 1)
        names.clear()
        alone = filled_windows(plan.segments, spool.read, options.vad, 30.0, options.first_window_seconds, WINDOW)
        assert names == {threading.current_thread().name}
    assert together == alone == plan.windows
