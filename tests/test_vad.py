"""Fast VAD: speech spans keep absolute times, and the shortened audio maps back correctly."""

import numpy as np
import pytest

from tests.conftest import SR, quiet, tone
from webui.modules.transcript import Segment
from webui.modules.vad import VadOptions, make_chunk, pack, speech_spans


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
    assert chunk.seconds < 7.0  # 4 s pause shortened to 1 s, edges trimmed
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


def test_model_vad_backends_feed_the_same_spans(clips):
    """fsmn-vad (real weights) through the same span logic: onsets agree with librosa's."""
    from tests.conftest import DATA
    from webui.modules.audio import decode

    speech = decode(DATA / "jfk.flac")
    audio = np.concatenate([quiet(2.0), speech, quiet(3.0), speech, quiet(2.0)])
    librosa_spans = speech_spans(audio, 10.0)
    fsmn_spans = speech_spans(audio, 10.0, VadOptions(backend="fsmn-vad"))
    second_onset = 10.0 + 2.0 + speech.size / SR + 3.0
    for spans in (librosa_spans, fsmn_spans):
        assert any(abs(s.start - second_onset - 0.3) <= 0.4 for s in spans), spans
        assert all(10.0 <= s.start < s.end <= 10.0 + audio.size / SR for s in spans)
    with pytest.raises(ValueError, match="unknown VAD"):
        speech_spans(audio, 0.0, VadOptions(backend="webrtc"))


def test_room_noise_alone_is_not_speech_but_quiet_speech_is():
    assert speech_spans(quiet(20.0, -65.0), 0.0) == []
    soft = np.concatenate([quiet(2.0, -65.0), tone(2.0, amp=10 ** (-42 / 20)), quiet(2.0, -65.0)])
    spans = speech_spans(soft, 0.0)
    assert len(spans) == 1 and spans[0].start == pytest.approx(2.0, abs=0.3)


def _chunk_with_spans(seg_start, speech_parts):
    """A chunk from alternating (kind, seconds) parts starting at `seg_start`."""
    audio = layout(*speech_parts)
    return make_chunk(Segment(0, seg_start, seg_start + audio.size / SR), audio)


def test_pack_fills_inputs_across_segments_and_keeps_absolute_times():
    a = _chunk_with_spans(0.0, [("q", 1.0), ("s", 8.0), ("q", 3.0), ("s", 9.0), ("q", 1.0)])
    silent = make_chunk(Segment(1, 22.0, 30.0), quiet(8.0))
    b = _chunk_with_spans(30.0, [("q", 2.0), ("s", 10.0), ("q", 2.0), ("s", 6.0)])
    packed = pack([a, silent, b], max_seconds=30.0, gap_seconds=0.6)
    speech = [c for c in packed if c.spans]
    assert [c.covers for c in packed if not c.spans] == [1]
    assert sum(c.covers for c in packed) == 3
    assert all(c.seconds <= 30.0 for c in speech)
    assert len(speech) == 2  # 8 + 9 + 10 fit in one input, the last 6 s span starts the next
    first = speech[0]
    assert [round(s.start, 1) for s in first.spans] == [round(s.start, 1) for s in a.spans + b.spans[:1]]
    # The time map still lands on the right place in the recording, across the packed seam.
    k = first.offsets[2]
    assert first.to_absolute(k + 1.0) == pytest.approx(b.spans[0].start + 1.0, abs=1e-3)
    lo = int(round(k * SR))
    src = int(round((b.spans[0].start - 30.0) * SR))
    source = layout(("q", 2.0), ("s", 10.0), ("q", 2.0), ("s", 6.0))
    np.testing.assert_array_equal(first.audio[lo:lo + 800], source[src:src + 800])


def test_slice_and_utterances_map_back_exactly():
    chunk = _chunk_with_spans(50.0, [("q", 1.0), ("s", 4.0), ("q", 3.0), ("s", 5.0), ("q", 1.0)])
    utts = chunk.utterances(0.8)
    assert len(utts) == 2
    part = chunk.slice(*utts[1])
    assert len(part.spans) == 1 and part.offsets == (0.0,)
    assert part.to_absolute(0.0) == pytest.approx(chunk.spans[1].start)
    assert part.seconds == pytest.approx(chunk.spans[1].end - chunk.spans[1].start, abs=1e-3)
    tail = chunk.slice(2.0)
    assert tail.spans[0].start == pytest.approx(chunk.spans[0].start + 2.0, abs=1e-3)
