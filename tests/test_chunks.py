"""SpeechChunk (chunks.py): pauses shortened, packing across segments, and the time map back
to the recording."""

import numpy as np
import pytest

from tests.conftest import SR, quiet, tone
from tests.test_vads import layout
from webui.modules.chunks import make_chunk, pack
from webui.modules.transcript import Segment
from webui.modules.vads import VadOptions

# tones stand in for speech: the energy VAD alone (conftest.energy_vad)
pytestmark = pytest.mark.usefixtures("energy_vad")


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


def _sentences(*seconds, pause=0.3):
    """One VAD span of several sentences: tones with short pauses (under keep_gap) between."""
    parts = [("q", 1.0)]
    for s in seconds:
        parts += [("s", s), ("q", pause)]
    return layout(*parts[:-1], ("q", 1.0))


def test_a_long_span_that_does_not_fit_is_cut_at_an_inner_pause_not_left_for_the_next_input():
    a = _chunk_with_spans(0.0, [("q", 1.0), ("s", 12.0), ("q", 1.0)])
    audio = _sentences(5.0, 6.0, 7.0)
    b = make_chunk(Segment(1, 14.0, 14.0 + audio.size / SR), audio)
    assert len(b.spans) == 1  # the 0.3 s pauses stay inside one span
    inputs = pack([a, b], max_seconds=30.0, gap_seconds=0.6)
    assert len(inputs) == 2
    first, second = inputs
    assert first.seconds > 24.0  # filled with the first two sentences, not closed at 12 s
    assert all(c.seconds <= 30.0 for c in inputs)
    # The cut lies in a pause: both sides of it are quiet.
    cut = first.spans[-1].end
    assert second.spans[0].start == pytest.approx(cut, abs=1e-3)  # contiguous: nothing lost, no gap
    at = int(round((cut - 14.0) * SR))
    assert np.abs(audio[at - 800:at + 800]).max() < 0.01
    # Every sample of the span is in exactly one input, in order.
    joined = np.concatenate([first.audio[int(round(first.offsets[-1] * SR)):], second.audio])
    lo = int(round((b.spans[0].start - 14.0) * SR))
    np.testing.assert_array_equal(joined, audio[lo:lo + joined.size])
    assert joined.size == pytest.approx((b.spans[0].end - b.spans[0].start) * SR, abs=2)
    assert sum(c.covers for c in inputs) == 2 and second.covers == 1
    # The time map of the second input starts at the cut.
    assert second.to_absolute(0.0) == pytest.approx(cut, abs=1e-3)


def test_a_span_without_an_inner_pause_is_never_cut():
    from webui.modules.chunks import split_at_pause

    a = _chunk_with_spans(0.0, [("q", 1.0), ("s", 20.0), ("q", 1.0)])
    b = _chunk_with_spans(22.0, [("q", 1.0), ("s", 15.0), ("q", 1.0)])
    inputs = pack([a, b], max_seconds=30.0, gap_seconds=0.6)
    assert [len(c.spans) for c in inputs] == [1, 1]
    head, rest = split_at_pause(b.pieces()[0], 9.0)
    assert head is None and rest.spans == b.spans
    # Nor next to its edges: both sides keep at least SPLIT_MIN_PART seconds.
    piece = make_chunk(Segment(0, 0.0, 10.0), _sentences(0.5, 8.0)).pieces()[0]
    assert split_at_pause(piece, 9.0)[0] is None


def test_pauses_are_shortened_further_only_where_that_saves_an_input():
    from webui.modules.chunks import GAP_SHRINK

    parts = [("q", 1.0)]
    for _ in range(10):
        parts += [("s", 2.45), ("q", 1.0)]
    chunk = _chunk_with_spans(0.0, parts)
    assert len(chunk.spans) == 10
    speech = sum(p.seconds for p in chunk.pieces())
    smallest = 0.6 * min(GAP_SHRINK)
    assert speech + 9 * 0.6 > 30.0 >= speech + 9 * smallest  # fits in one input only at the shortest gap
    (one,) = pack([chunk], max_seconds=30.0, gap_seconds=0.6)
    gaps = [o - (p + s.end - s.start) for o, p, s in zip(one.offsets[1:], one.offsets, one.spans)]
    assert gaps == pytest.approx([smallest] * 9, abs=1e-3) and one.seconds <= 30.0
    assert one.to_absolute(one.offsets[5] + 0.5) == pytest.approx(chunk.spans[5].start + 0.5, abs=1e-3)
    # Half of it fits at any gap: the pauses keep keep_gap.
    half = _chunk_with_spans(0.0, parts[:11])
    (kept,) = pack([half], max_seconds=30.0, gap_seconds=0.6)
    assert kept.offsets[1] - (kept.spans[0].end - kept.spans[0].start) == pytest.approx(0.6, abs=1e-3)


def test_chinese_is_packed_and_japanese_and_korean_run_one_utterance_per_input():
    from webui.modules.options import PipelineOptions
    from webui.modules.windows import by_utterance

    options = PipelineOptions()
    assert [by_utterance(options, lang) for lang in ("zh", "zh-TW", "yue", "en", "", "auto")] == [False] * 6
    assert by_utterance(options, "ja") and by_utterance(options, "ko")
    assert by_utterance(PipelineOptions(utterance_inputs=True), "en")  # the option wins either way
    assert not by_utterance(PipelineOptions(utterance_inputs=False), "ja")


def test_the_two_sides_of_a_cut_agree_when_one_of_them_speaks_at_it():
    """A cut inside speech: the second segment's VAD counts its first instant as speech, the
    first segment's stopped short of the cut (its own louder frames set a higher threshold).
    make_chunks runs the first side's speech on to the cut, with the audio that lay there, so
    the two sides meet and the packer joins them without a gap; a cut in a pause is left alone."""
    from webui.modules.chunks import EDGE_BRIDGE, ONSET_BRIDGE, agree_at_cuts, make_chunks
    from webui.modules.vads import SpeechSpan

    a, b, c = Segment(0, 0.0, 10.0), Segment(1, 10.0, 20.0), Segment(2, 20.0, 30.0)
    spans = [[SpeechSpan(1.0, 9.0)], [SpeechSpan(10.0, 18.5)], [SpeechSpan(20.4, 29.0)]]
    agreed = agree_at_cuts([a, b, c], spans)
    assert agreed[0] == [SpeechSpan(1.0, 10.0)]            # b speaks at 10.0: a runs to it (1 s)
    assert agreed[1] == [SpeechSpan(10.0, 18.5)]           # neither side speaks at 20.0: a pause
    assert agreed[2] == [SpeechSpan(20.4, 29.0)]
    reach = [[SpeechSpan(1.0, 10.0)], [SpeechSpan(10.3, 18.5)], [SpeechSpan(20.4, 29.0)]]
    assert agree_at_cuts([a, b, c], reach)[1][0] == SpeechSpan(10.0, 18.5)  # and the other way round
    far = [[SpeechSpan(1.0, 10.0 - EDGE_BRIDGE - 0.5)], [SpeechSpan(10.0, 18.5)], []]
    assert agree_at_cuts([a, b, c], far)[0] == far[0]  # too far from the cut: the VAD's own end stays
    # A start is run back only from closer (a line would start that much early): 1 s is too far.
    late = [[SpeechSpan(1.0, 10.0)], [SpeechSpan(10.0 + ONSET_BRIDGE + 0.6, 18.5)], []]
    assert agree_at_cuts([a, b, c], late)[1] == late[1]

    # Through the real VAD: a loud voice in the first segment sets its threshold above a soft
    # voice at its end; the second segment holds only the soft voice and counts it as speech.
    soft, loud = tone(1.0, 300, amp=0.003), tone(7.5, 300, amp=0.9)
    first = np.concatenate([quiet(1.0), loud, quiet(0.5, level_db=-70), soft])   # 10 s, soft 9-10 s
    second = np.concatenate([tone(3.0, 300, amp=0.003), quiet(7.0)])            # soft 10-13 s
    s1, s2 = Segment(0, 0.0, 10.0), Segment(1, 10.0, 20.0)
    alone = [make_chunk(s1, first), make_chunk(s2, second)]
    assert alone[0].spans[-1].end < 9.0 and alone[1].spans[0].start == 10.0  # they disagree at 10.0
    chunks = make_chunks([s1, s2], [first, second])
    assert chunks[0].spans[-1].end == 10.0 and chunks[1].spans == alone[1].spans
    assert chunks[0].audio.size == alone[0].audio.size + int(round((10.0 - alone[0].spans[-1].end) * SR))
    packed = pack(chunks, 30.0, 0.6)
    assert len(packed) == 1 and packed[0].audio.size == chunks[0].audio.size + chunks[1].audio.size  # no gap
