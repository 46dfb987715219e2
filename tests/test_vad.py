"""Fast VAD: speech spans keep absolute times, and the shortened audio maps back correctly."""

import numpy as np
import pytest

from tests.conftest import SR, quiet, tone
from webui.modules.transcript import Segment
from webui.modules.vad import VadOptions, make_chunk, speech_spans


def layout(*parts):
    return np.concatenate([tone(s, 300 + 50 * i) if kind == "s" else quiet(s) for i, (kind, s) in enumerate(parts)])


def test_spans_are_absolute():
    audio = layout(("q", 2.0), ("s", 3.0), ("q", 4.0), ("s", 2.0), ("q", 1.0))
    spans = speech_spans(audio, offset=100.0)
    assert len(spans) == 2
    assert spans[0].start == pytest.approx(102.0, abs=0.3) and spans[0].end == pytest.approx(105.0, abs=0.3)
    assert spans[1].start == pytest.approx(109.0, abs=0.3) and spans[1].end == pytest.approx(111.0, abs=0.3)


def test_chunk_shortens_pauses_but_maps_back_to_recording_time():
    audio = layout(("q", 2.0), ("s", 3.0), ("q", 4.0), ("s", 2.0), ("q", 1.0))
    seg = Segment(0, 100.0, 112.0)
    chunk = make_chunk(seg, audio, VadOptions())
    assert chunk.seconds < 6.5  # 4 s pause shortened to 0.3 s, edges trimmed
    assert chunk.to_absolute(0.0) == pytest.approx(chunk.spans[0].start)
    second = chunk.offsets[1]
    assert chunk.to_absolute(second) == pytest.approx(chunk.spans[1].start)
    assert chunk.to_absolute(second + 1.0) == pytest.approx(chunk.spans[1].start + 1.0)
    # A time inside the shortened pause: as an end it is the speech before, as a start the speech after.
    assert chunk.to_absolute(second - 0.1, "end") == pytest.approx(chunk.spans[0].end)
    assert chunk.to_absolute(second - 0.1, "start") == pytest.approx(chunk.spans[1].start)
    assert chunk.span_index(second - 0.1) == 1 and chunk.span_index(0.5) == 0
    assert chunk.utterance_ids(0.8) == (0, 1) and chunk.utterance_ids(10.0) == (0, 0)
    # The audio handed to the engine is the speech itself, sample for sample.
    lo = int((chunk.spans[1].start - seg.start) * SR)
    k = int(second * SR)
    np.testing.assert_array_equal(chunk.audio[k:k + 1000], audio[lo:lo + 1000])


def test_silent_segment_has_no_speech():
    chunk = make_chunk(Segment(0, 0.0, 10.0), quiet(10.0, -80.0))
    assert chunk.spans == () and chunk.seconds == 0


def test_digital_silence_and_empty_input():
    assert speech_spans(np.zeros(SR * 5, dtype=np.float32), 0.0) == []
    assert speech_spans(np.zeros(0, dtype=np.float32), 0.0) == []


def test_short_gaps_do_not_split_speech():
    audio = layout(("s", 1.0), ("q", 0.2), ("s", 1.0))
    assert len(speech_spans(audio, 0.0)) == 1


def test_top_db_is_settable():
    audio = np.concatenate([tone(2.0, amp=0.5), tone(2.0, amp=0.5 * 10 ** (-30 / 20))])
    loose = speech_spans(audio, 0.0, VadOptions(top_db=40))
    strict = speech_spans(audio, 0.0, VadOptions(top_db=20))
    assert loose[-1].end == pytest.approx(4.0, abs=0.3)
    assert strict[-1].end == pytest.approx(2.0, abs=0.3)
