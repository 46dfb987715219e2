"""Speakers onto lines: a line never spans a speaker change; split on the model's word times."""

from __future__ import annotations

from webui.modules.speakers import TurnIndex, label_line, label_results, talk_time
from webui.modules.transcript import Segment, SegmentResult, SpeakerTurn, TimedText, Word

TURNS = [SpeakerTurn(0.0, 4.0, "Speaker 1"), SpeakerTurn(4.2, 9.0, "Speaker 2"), SpeakerTurn(9.0, 12.0, "Speaker 1")]


def _line(start: float, words: list[tuple[float, float, str]]) -> TimedText:
    return TimedText(start, words[-1][1], " ".join(w for _, _, w in words), words=tuple(Word(*w) for w in words))


def test_a_line_across_a_speaker_change_is_split_on_its_word_times() -> None:
    line = _line(2.5, [(2.5, 3.0, "Yes,"), (3.0, 3.8, "agreed."), (4.3, 4.8, "Then"), (4.8, 5.5, "next.")])
    first, second = label_line(line, TurnIndex(TURNS))
    assert (first.text, first.speaker, first.start, first.end) == ("Yes, agreed.", "Speaker 1", 2.5, 3.8)
    assert (second.text, second.speaker, second.start, second.end) == ("Then next.", "Speaker 2", 4.3, 5.5)
    assert all(w.speaker == "Speaker 2" for w in second.words)


def test_lines_without_words_take_the_speaker_with_most_overlap() -> None:
    index = TurnIndex(TURNS)
    assert label_line(TimedText(3.5, 8.0, "x"), index)[0].speaker == "Speaker 2"
    assert label_line(TimedText(20.0, 21.0, "late"), index)[0].speaker == "Speaker 1"  # nearest turn
    assert label_line(TimedText(4.05, 4.1, "gap"), index)[0].speaker in ("Speaker 1", "Speaker 2")


def test_results_keep_their_order_and_every_word() -> None:
    lines = (_line(0.5, [(0.5, 1.0, "a"), (5.0, 5.5, "b"), (9.5, 10.0, "c")]),)
    [result] = label_results([SegmentResult(Segment(0, 0.0, 12.0), lines, 3.0)], TURNS)
    assert [(p.text, p.speaker) for p in result.pieces] == [("a", "Speaker 1"), ("b", "Speaker 2"), ("c", "Speaker 1")]
    assert label_results([SegmentResult(Segment(0, 0.0, 12.0), lines, 3.0)], [])[0].pieces == lines


def test_talk_time_per_speaker() -> None:
    assert talk_time(TURNS) == {"Speaker 1": 7.0, "Speaker 2": 4.8}


def test_history_keeps_the_speaker_turns_and_labels(tmp_path) -> None:
    from webui.modules.history import History
    from webui.modules.transcript import Transcript, render

    history = History(tmp_path / "h.db")
    job = history.create_job("a b.wav", "", "m", {})
    history.mark_running(job)
    line = TimedText(0.0, 1.0, "hi", words=(Word(0.1, 0.5, "hi", "Speaker 2"),), speaker="Speaker 2")
    history.finish_job(job, Transcript("a b.wav", 3.0, "m", text="hi", segments=[line],
                                       turns=[SpeakerTurn(0.0, 1.2, "Speaker 2")]))
    stored = history.get(job).to_transcript()
    assert stored.segments[0].speaker == "Speaker 2" and stored.segments[0].words[0].speaker == "Speaker 2"
    assert render(stored, "rttm") == "SPEAKER a_b 1 0.000 1.200 <NA> <NA> Speaker_2 <NA> <NA>\n"


def test_a_known_name_that_looks_like_a_number_never_doubles_a_label():
    from webui.modules.speakers import _labels

    assert _labels([0, 1, 2], {}) == {0: "Speaker 1", 1: "Speaker 2", 2: "Speaker 3"}
    named = _labels([0, 1, 2], {2: "Speaker 2"})  # a profile called "Speaker 2" matched the third voice
    assert named[2] == "Speaker 2" and len(set(named.values())) == 3
    assert _labels([0, 1], {0: "Carlo"}) == {0: "Carlo", 1: "Speaker 2"}


def test_a_split_line_keeps_the_models_spelling() -> None:
    """Words are kept without the space before them: the split line is cut out of the line's text,
    not joined again with spaces ("ill -disposed" was written for "ill-disposed"); Chinese keeps
    no spaces either way."""
    words = [(2.5, 2.7, "He"), (2.7, 2.9, "was"), (2.9, 3.2, "ill"), (3.2, 3.8, "-disposed."),
             (4.3, 4.8, "Go"), (4.8, 5.5, "forward.")]
    line = TimedText(2.5, 5.5, "He was ill-disposed. Go forward.", words=tuple(Word(*w) for w in words))
    first, second = label_line(line, TurnIndex(TURNS))
    assert (first.text, second.text) == ("He was ill-disposed.", "Go forward.")
    zh = TimedText(2.5, 5.5, "我们开始吧好的", words=tuple(Word(*w) for w in [(2.5, 3.0, "我们"), (3.0, 3.8, "开始吧"),
                                                                              (4.3, 5.5, "好的")]))
    assert [line.text for line in label_line(zh, TurnIndex(TURNS))] == ["我们开始吧", "好的"]
    # words the text does not hold in order: joined as before
    odd = TimedText(2.5, 5.5, "something else", words=(Word(2.5, 3.0, "Yes,"), Word(4.3, 4.8, "then.")))
    assert [line.text for line in label_line(odd, TurnIndex(TURNS))] == ["Yes,", "then."]
