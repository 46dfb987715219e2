"""Subtitle lines (lines.py): text split at the pauses VAD found, by word times; each line in
recording time, starting on its speech onset, in order."""

import numpy as np
import pytest

from tests.conftest import quiet, tone
from webui.modules.chunks import make_chunk
from webui.modules.engines.base import EngineOutput, LocalText, LocalWord
from webui.modules.lines import split_at_pauses, to_result
from webui.modules.transcript import Segment

# tones stand in for speech: the energy VAD alone (conftest.energy_vad)
pytestmark = pytest.mark.usefixtures("energy_vad")


@pytest.fixture
def chunk():
    """Speech 1–4 s and 7–10 s of a segment starting at 60 s: one long pause, shortened."""
    audio = np.concatenate([quiet(1.0), tone(3.0), quiet(3.0), tone(3.0), quiet(1.0)])
    return make_chunk(Segment(0, 60.0, 71.0), audio)


def words_over(chunk, per_span=3):
    """Evenly timed words inside each speech span of the chunk (local time)."""
    out = []
    for n, (span, offset) in enumerate(zip(chunk.spans, chunk.offsets)):
        length = span.end - span.start
        for k in range(per_span):
            start = offset + length * k / per_span
            out.append(LocalWord(start, start + length / per_span * 0.8, f" w{n}{k}"))
    return tuple(out)


def test_text_is_split_at_the_pause_and_each_line_starts_on_its_onset(chunk):
    words = words_over(chunk)
    piece = LocalText(words[0].start, words[-1].end, "".join(w.text for w in words).strip(), words)
    lines = split_at_pauses(piece, chunk)
    assert [line.text for line in lines] == ["w00 w01 w02", "w10 w11 w12"]
    result = to_result(chunk, EngineOutput((piece,), "en"), snap=0.5)
    starts = [p.start for p in result.pieces]
    assert starts == pytest.approx([s.start for s in chunk.spans], abs=1e-3)  # onsets in recording time
    assert all(p.end > p.start for p in result.pieces)
    assert result.pieces[0].end <= chunk.spans[0].end + 1e-3  # a line stays inside its speech


def test_a_piece_without_word_times_stays_whole_and_in_order(chunk):
    pieces = (LocalText(0.5, 1.0, "b"), LocalText(0.0, 0.4, "a"))  # the model's times run backwards
    result = to_result(chunk, EngineOutput(pieces, "en"), snap=0.0)
    assert [p.text for p in result.pieces] == ["b", "a"]
    starts = [p.start for p in result.pieces]
    assert starts == sorted(starts) and starts[0] >= chunk.segment.start


def test_a_long_line_breaks_at_a_sentence_end():
    audio = tone(30.0)
    chunk = make_chunk(Segment(0, 0.0, 30.0), audio)
    words = [LocalWord(i * 0.5, i * 0.5 + 0.4, f" w{i}" + ("." if i == 20 else "")) for i in range(40)]
    piece = LocalText(0.0, 20.0, "".join(w.text for w in words).strip(), tuple(words))
    lines = split_at_pauses(piece, chunk, max_line=7.0)
    assert lines[0].text.endswith("w20.") and len(lines) >= 2
    assert all(line.end - line.start <= 2 * 7.0 + 0.5 for line in lines)


def test_cues_never_overlap_nor_flash_by_and_keep_every_word():
    from webui.modules.lines import tidy_cues
    from webui.modules.transcript import TimedText

    pieces = [
        TimedText(0.0, 2.0, "A long line."),
        TimedText(1869.19, 1869.19, "chest."),        # zero length, split off a line: the seen bug
        TimedText(1869.19, 1871.0, "Next line"),       # starts where it starts
        TimedText(1870.5, 1872.0, "overlaps it"),
        TimedText(1880.0, 1880.1, "short, room after"),
        TimedText(1881.0, 1881.0, "last, zero"),
    ]
    cues = tidy_cues(list(pieces))
    assert " ".join(c.text for c in cues).split() == " ".join(p.text for p in pieces).split()
    for a, b in zip(cues, cues[1:]):
        assert a.end <= b.start + 1e-9, (a, b)
    assert all(c.end - c.start >= 0.3 - 1e-6 for c in cues), cues
    assert cues[-1].end == pytest.approx(1881.3)
    assert cues[0] == pieces[0]  # a far-away line is never stretched over the gap
    assert cues[1].text == "chest. Next line" and cues[1].start == 1869.19
    first_zero = tidy_cues([TimedText(5.0, 5.0, "Oh."), TimedText(5.1, 7.0, "Hello there")])
    assert [(c.start, c.text) for c in first_zero] == [(5.0, "Oh. Hello there")]
