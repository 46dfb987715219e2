"""Batching: longest first, sized per batch, every input exactly once; order restored by the pipeline."""

import threading

import numpy as np
import pytest

from tests.fakes import EchoEngine, drive as _run_engine
from webui.modules.batching import Tally as _Tally
from webui.modules.batching import iter_batches
from webui.modules.chunks import SpeechChunk
from webui.modules.transcript import Segment
from webui.modules.vads import SpeechSpan


def test_every_index_once_longest_first():
    durations = [5.0, 30.0, 12.0, 29.0, 1.0, 17.0, 8.0]
    batches = list(iter_batches(durations, lambda padded: 3))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(durations)))
    assert [durations[i] for i in flat] == sorted(durations, reverse=True)
    assert [len(b) for b in batches] == [3, 3, 1]


def test_limit_is_asked_lazily_for_each_batch_with_its_padded_length():
    asked = []

    def limit(padded):
        asked.append(padded)
        return 2 if padded > 20 else 4

    gen = iter_batches([30.0, 25.0, 21.0, 10.0, 9.0, 8.0, 7.0], limit)
    first = next(gen)
    assert asked == [30.0] and first == [0, 1]
    rest = list(gen)
    assert asked == [30.0, 21.0, 9.0]
    assert rest == [[2, 3], [4, 5, 6]]
    assert sorted(i for b in [first, *rest] for i in b) == list(range(7))


def test_zero_limit_still_makes_progress():
    assert list(iter_batches([1.0, 2.0], lambda p: 0)) == [[1], [0]]


def chunk(i, samples, speech=True):
    seg = Segment(i, i * 10.0, i * 10.0 + 10.0)
    spans = (SpeechSpan(seg.start, seg.start + samples / 16000),) if speech else ()
    return SpeechChunk(seg, np.zeros(samples if speech else 0, np.float32), spans, (0.0,) if speech else ())


def test_pipeline_restores_time_order_and_skips_silence():
    sizes = [16000, 80000, 0, 48000, 32000, 160000]
    chunks = [chunk(i, n, speech=n > 0) for i, n in enumerate(sizes)]
    engine = EchoEngine(cap=2)
    counts = _Tally()
    outputs = _run_engine(engine, chunks, "auto", counts, None)
    assert outputs[2] is None  # silent chunk never reached the model
    for n, out in zip(sizes, outputs):
        if n:
            assert out.pieces[0].text == f"len={n}"
    assert engine.batches == [[160000, 80000], [48000, 32000], [16000]]
    assert counts.batches == 3 and engine.released == 3


def test_cancel_between_batches_leaves_the_rest_undone():
    chunks = [chunk(i, 16000 * (i + 1)) for i in range(4)]
    cancel = threading.Event()
    engine = EchoEngine(cap=1)
    original = engine.transcribe_batch

    def once_then_cancel(audios, language="auto"):
        cancel.set()
        return original(audios, language)

    engine.transcribe_batch = once_then_cancel
    outputs = _run_engine(engine, chunks, "en", _Tally(), cancel)
    assert sum(o is not None for o in outputs) == 1 and outputs[3] is not None


def test_pipeline_reports_progress_after_every_batch():
    from tests.conftest import DATA
    from webui.modules.events import Finished, Progress
    from webui.modules.options import PipelineOptions
    from webui.modules.pipeline import transcribe

    engine = EchoEngine(cap=1)
    events = list(transcribe(DATA / "two_cities.wav", PipelineOptions(itn=False, retry_tail_seconds=0.0), engine=engine))
    done = [e.done for e in events if isinstance(e, Progress) and e.stage == "transcribe"]
    assert len(engine.batches) >= 2 and len(done) >= len(engine.batches)
    assert done == sorted(done) and done[-1] == pytest.approx(events[-1].transcript.duration)
    assert isinstance(events[-1], Finished) and events[-1].stats.batches == len(engine.batches)


def test_an_engine_that_takes_utterances_gets_each_inputs_own_and_the_others_none():
    from webui.modules.lines import UTTERANCE_PAUSE

    class Listening(EchoEngine):
        takes_utterances = True

        def __init__(self):
            super().__init__(cap=2)
            self.heard = []

        def transcribe_batch(self, audios, language="auto", utterances=None):
            self.heard.append([list(u) for u in utterances])
            return super().transcribe_batch(audios, language)

    seg = Segment(0, 0.0, 30.0)
    # two utterances (a 1.0-s pause between spans), and one of two spans 0.3 s apart
    two = SpeechChunk(seg, np.zeros(int(4.6 * 16000), np.float32), (SpeechSpan(1.0, 3.0), SpeechSpan(4.0, 6.0)),
                      (0.0, 2.6))
    one = SpeechChunk(seg, np.zeros(int(4.6 * 16000), np.float32), (SpeechSpan(10.0, 12.0), SpeechSpan(12.3, 14.3)),
                      (0.0, 2.6))
    assert 1.0 >= UTTERANCE_PAUSE > 0.3
    listening = Listening()
    _run_engine(listening, [two, one], "zh", _Tally(), None)
    assert listening.heard == [[[(0.0, 2.0), (2.6, 4.6)], [(0.0, pytest.approx(4.6))]]]
    plain = EchoEngine(cap=2)  # no utterances argument: called as before
    assert [o.pieces[0].text for o in _run_engine(plain, [two, one], "zh", _Tally(), None)] == ["len=73600"] * 2
