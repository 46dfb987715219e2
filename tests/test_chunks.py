"""SpeechChunk (chunks.py): pauses shortened, packing across segments, and the time map back
to the recording."""

import numpy as np
import pytest

from tests.conftest import SR, quiet
from tests.test_vads import layout
from webui.modules.chunks import make_chunk, pack
from webui.modules.transcript import Segment
from webui.modules.vads import VadOptions


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


def test_silent_segment_has_no_speech():
    chunk = make_chunk(Segment(0, 0.0, 10.0), quiet(10.0, -80.0))
    assert chunk.spans == () and chunk.seconds == 0


def _cut_inside_speech(before, after):
    """One stretch of speech cut in two by the plan (no silence there): two segments whose
    speech meets at the cut. `before`/`after`: (kind, seconds) parts on each side."""
    from tests.conftest import tone

    audio = np.concatenate([layout(*before), tone(4.0, 300.0)])
    cut = audio.size / SR - 2.0  # in the middle of the last 4 s of speech
    rest = np.concatenate([audio[int(cut * SR):], layout(*after)])
    first = make_chunk(Segment(0, 0.0, cut), audio[:int(cut * SR)])
    second = make_chunk(Segment(1, cut, cut + rest.size / SR), rest)
    return first, second, cut


def test_speech_cut_by_the_plan_is_joined_back_without_a_gap():
    first, second, cut = _cut_inside_speech([("q", 1.0), ("s", 3.0), ("q", 2.0)], [("q", 2.0)])
    assert first.spans[-1].end == pytest.approx(cut, abs=1e-3) and second.spans[0].start == pytest.approx(cut, abs=1e-3)
    (joined,) = pack([first, second], 30.0, 0.6)
    assert joined.seconds == pytest.approx(first.seconds + second.seconds, abs=1e-3)  # no gap at the cut
    assert joined.covers == 2
    assert joined.to_absolute(joined.offsets[-1] + 1.0) == pytest.approx(cut + 1.0, abs=1e-3)


def test_an_input_never_ends_at_a_cut_inside_speech_when_the_speech_before_can_move_on():
    first, second, cut = _cut_inside_speech([("s", 15.0), ("q", 2.0), ("s", 5.0), ("q", 2.0)], [("q", 1.0)])
    assert len(first.spans) == 3  # 15 s, 5 s, and the 2 s before the cut
    assert first.seconds < 24.0 < first.seconds + 0.6 + second.seconds
    inputs = pack([first, second], 24.0, 0.6)  # both sides together do not fit in one input
    ends = [c.spans[-1].end for c in inputs]
    assert all(abs(end - cut) > 0.01 for end in ends[:-1]), ends
    assert [round(c.spans[0].start, 1) for c in inputs][1] < cut - 1.5  # the speech before the cut moved on
    assert sum(c.covers for c in inputs) == 2
    spans = [s for c in inputs for s in c.spans]
    assert spans == list(first.spans) + list(second.spans)  # nothing lost or repeated
