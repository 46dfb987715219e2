"""Second pass (second_pass.py through the batch runner): speech an input's text did not cover
is run again, and the new text lands at the right time."""

from dataclasses import replace

import numpy as np
import pytest

from tests.fakes import EchoEngine, drive as _run_engine
from webui.modules import second_pass
from webui.modules.batching import Tally as _Tally
from webui.modules.engines.base import EngineOutput, LocalText
from webui.modules.transcript import Scores, Segment

# tones stand in for speech: the energy VAD alone (conftest.energy_vad)
pytestmark = pytest.mark.usefixtures("energy_vad")


class ForgetfulEngine(EchoEngine):
    """Skips most of a long input's speech, or stops early, the way batched decoders do."""

    def __init__(self, mode, early_end=5.5):
        super().__init__(cap=4)
        self.mode = mode
        self.early_end = early_end

    def transcribe_batch(self, audios, language="auto"):
        self.batches.append([a.size for a in audios])
        outs = []
        for a in audios:
            seconds = a.size / 16000
            if seconds > 10 and self.mode == "sparse":
                outs.append(EngineOutput((LocalText(0.0, seconds, "hm"),), "en"))
            elif seconds > 10 and self.mode == "early":
                outs.append(EngineOutput((LocalText(0.0, self.early_end, "one two three four five six seven eight nine ten"),),
                                        "en"))
            else:
                text = " ".join(["word"] * max(1, int(seconds * 2)))
                outs.append(EngineOutput((LocalText(0.0, seconds, text),), "en"))
        return outs


def _two_utterances():
    from tests.conftest import quiet, tone
    from webui.modules.chunks import make_chunk

    audio = np.concatenate([tone(6.0), quiet(3.0), tone(6.0)])
    return make_chunk(Segment(0, 100.0, 115.0), audio)


def test_sparse_text_gets_each_utterance_run_again():
    chunk = _two_utterances()
    engine = ForgetfulEngine("sparse")
    out = _run_engine(engine, [chunk], "en", _Tally(), None, retry_tail=2.0)[0]
    assert "hm" not in [p.text for p in out.pieces]
    assert len(out.pieces) == 2 and all(p.text.startswith("word") for p in out.pieces)
    assert out.pieces[1].start == pytest.approx(chunk.offsets[1], abs=0.01)  # in the chunk's own time
    assert len(engine.batches) == 2 and len(engine.batches[1]) == 2


def test_text_that_stops_early_gets_the_rest_transcribed():
    chunk = _two_utterances()
    engine = ForgetfulEngine("early")
    out = _run_engine(engine, [chunk], "en", _Tally(), None, retry_tail=2.0)[0]
    assert [p.text.split()[0] for p in out.pieces] == ["one", "word"]
    assert out.pieces[1].start == pytest.approx(chunk.offsets[1], abs=0.01)
    # Stopped with two seconds of its utterance still to come: run again from right there.
    engine = ForgetfulEngine("early", early_end=4.0)
    out = _run_engine(engine, [chunk], "en", _Tally(), None, retry_tail=2.0)[0]
    assert [p.text.split()[0] for p in out.pieces] == ["one", "word"]
    assert out.pieces[1].start == pytest.approx(4.0, abs=0.01)
    assert engine.batches[1] == [int(round((chunk.seconds - 4.0) * 16000))]
    # Off switch: one pass only.
    engine = ForgetfulEngine("early")
    assert len(_run_engine(engine, [chunk], "en", _Tally(), None, retry_tail=0.0)[0].pieces) == 1


def test_plan_leaves_short_silent_and_well_covered_inputs_alone():
    chunk = _two_utterances()
    full = EngineOutput((LocalText(0.0, chunk.seconds, " ".join(["word"] * 30)),), "en")
    assert second_pass.plan([chunk], [full], retry_tail=2.0) == []
    assert second_pass.plan([chunk], [None], retry_tail=2.0) == []  # cancelled: nothing to judge
    sparse = EngineOutput((LocalText(0.0, chunk.seconds, "hm"),), "en")
    assert [r.replaces for r in second_pass.plan([chunk], [sparse], retry_tail=2.0)] == [True, True]


def test_chinese_text_is_judged_by_characters_at_the_pace_of_chinese_speech():
    """Twelve seconds of speech: 30 words cover it, and so do 30 Chinese characters (a
    syllable each); 12 characters (one short sentence of a packed input) do not, where 12
    words would."""
    chunk = _two_utterances()
    assert chunk.speech_seconds > 11

    def plan(text):
        return second_pass.plan([chunk], [EngineOutput((LocalText(0.0, chunk.seconds, text),), "zh")], retry_tail=2.0)

    assert plan("甚至出现交易几乎停滞的情况一二线城市虽然也处于调整中广州市房地产") == []  # 30 characters
    assert [r.replaces for r in plan("甚至出现交易几乎停滞的情况")] == [True, True]
    assert plan(" ".join(["word"] * 12)) == []
    # Mixed text: each part at its own pace (either part alone is too little).
    assert plan("one two three four five 甚至出现交易几乎停滞的情况") == []
    assert len(plan("one two three four five")) == 2


def test_a_word_stretched_over_seconds_of_speech_marks_skipped_speech():
    """Dense enough text whose alignment spread one word over 5 s of the input: the decoder
    skipped an utterance there, so each utterance runs again; ordinary word lengths do not."""
    from webui.modules.engines.base import LocalWord

    chunk = _two_utterances()

    def output(stretch):
        words = [LocalWord(0.3 * k, 0.3 * k + 0.28, "word") for k in range(29)]
        words.append(LocalWord(9.0, 9.0 + stretch, "word"))
        return EngineOutput((LocalText(0.0, 9.0 + stretch, " ".join(w.text for w in words), tuple(words)),), "en")

    assert second_pass.plan([chunk], [output(1.0)], retry_tail=20.0) == []
    redo = second_pass.plan([chunk], [output(5.0)], retry_tail=20.0)
    assert [r.replaces for r in redo] == [True, True]


def test_a_sparse_input_of_many_utterances_runs_them_again_two_at_a_time():
    from tests.conftest import quiet, tone
    from webui.modules.chunks import make_chunk

    parts = [tone(4.0)]
    for _ in range(4):
        parts += [quiet(3.0), tone(4.0)]
    chunk = make_chunk(Segment(0, 100.0, 128.0), np.concatenate(parts))
    utterances = chunk.utterances(second_pass.UTTERANCE_PAUSE)
    assert len(utterances) == 5
    sparse = EngineOutput((LocalText(0.0, chunk.seconds, "hm"),), "en")
    redo = second_pass.plan([chunk], [sparse], retry_tail=2.0)
    assert [(r.start, r.end) for r in redo] == [(utterances[0][0], utterances[1][1]),
                                                 (utterances[2][0], utterances[3][1]), utterances[4]]
    assert all(r.replaces for r in redo)


def test_text_whole_until_it_stopped_early_is_kept_and_only_the_utterances_after_it_run_again():
    """Whole text for the first of five utterances, then nothing: too sparse for the input, but
    the decoder wrote what it wrote in full and stopped. The four utterances after it run again
    two at a time, and the first text stays. The same few words reaching the input's end mean
    speech skipped in between, and neither Chinese text nor a decode Whisper would call failed
    is trusted this way: every utterance runs again, two at a time, replacing the first answer."""
    from tests.conftest import quiet, tone
    from webui.modules.chunks import make_chunk
    from webui.modules.engines.base import LocalWord

    parts = [tone(4.0)]
    for _ in range(4):
        parts += [quiet(3.0), tone(4.0)]
    chunk = make_chunk(Segment(0, 100.0, 128.0), np.concatenate(parts))
    utterances = chunk.utterances(second_pass.UTTERANCE_PAUSE)

    def output(last_word_at, word=" word"):
        words = [LocalWord(0.5 * k, 0.5 * k + 0.4, word) for k in range(7)]
        words.append(LocalWord(last_word_at, last_word_at + 0.4, word))
        return EngineOutput((LocalText(0.0, words[-1].end, "".join(w.text for w in words), tuple(words)),), "en")

    assert second_pass.too_sparse(output(3.5), chunk.speech_seconds)
    redo = second_pass.plan([chunk], [output(3.5)], retry_tail=2.0)
    assert [(r.start, r.end, r.replaces) for r in redo] == [
        (pytest.approx(utterances[1][0]), utterances[2][1], False), (utterances[3][0], utterances[4][1], False)]
    everything = [(lo, hi, True) for lo, hi in second_pass.grouped(utterances, 2)]
    reaches_the_end = second_pass.plan([chunk], [output(utterances[4][0] + 1.0)], retry_tail=2.0)
    assert [(r.start, r.end, r.replaces) for r in reaches_the_end] == everything
    chinese = output(3.5, "好好")  # 16 characters in 12 s of speech: as sparse
    assert [(r.start, r.end, r.replaces) for r in second_pass.plan([chunk], [chinese], retry_tail=2.0)] == everything
    # A decode Whisper itself would call failed (a line made up, then end-of-text) is not kept.
    sure, unsure, repetitive = (Scores(logprob, 0.1, ratio, 0.0) for logprob, ratio in
                                ((-0.3, 1.1), (-1.3, 1.1), (-0.3, 2.9)))
    everything_again = [second_pass.Redo(0, lo, hi, True) for lo, hi, _ in everything]
    for scores, expected in ((sure, redo), (unsure, everything_again), (repetitive, everything_again)):
        out = output(3.5)
        scored = replace(out, pieces=tuple(replace(p, scores=scores) for p in out.pieces))
        assert second_pass.plan([chunk], [scored], retry_tail=2.0) == expected


class StopsAfterThreeSeconds(EchoEngine):
    """Writes dense text for the first 3 s of any input, then stops: an early end-of-text on
    every pass, the way Whisper stops after a short first utterance of a long stretch."""

    def transcribe_batch(self, audios, language="auto"):
        self.batches.append([a.size for a in audios])
        return [EngineOutput((LocalText(0.0, 3.0, "one two three four five six seven eight"),), "en")
                for _ in audios]


def _one_long_utterance(seconds=40.0):
    from tests.conftest import tone
    from webui.modules.chunks import make_chunk

    return make_chunk(Segment(0, 100.0, 100.0 + seconds), tone(seconds))


def test_a_sparse_single_utterance_is_not_run_again_unchanged_but_from_where_its_text_stopped():
    chunk = _one_long_utterance()
    assert len(chunk.utterances(second_pass.UTTERANCE_PAUSE)) == 1
    sparse_and_early = EngineOutput((LocalText(0.0, 2.5, "one two three"),), "en")
    redo = second_pass.plan([chunk], [sparse_and_early], retry_tail=2.0)
    assert [(r.start, r.end, r.replaces) for r in redo] == [(pytest.approx(2.5, abs=0.05), chunk.seconds, False)]


def test_a_rerun_that_stops_early_again_is_followed_up_a_bounded_number_of_times():
    chunk = _one_long_utterance()
    engine = StopsAfterThreeSeconds(cap=4)
    out = _run_engine(engine, [chunk], "en", _Tally(), None, retry_tail=2.0)[0]
    starts = [round(p.start, 1) for p in out.pieces]
    # first pass, then MAX_RERUNS passes, each taking up where the last text stopped
    assert starts == [3.0 * k for k in range(1 + second_pass.MAX_RERUNS)]
    assert len(engine.batches) == 1 + second_pass.MAX_RERUNS
    assert [b[0] for b in engine.batches] == sorted((b[0] for b in engine.batches), reverse=True)  # shorter each time


class LateStartEngine(EchoEngine):
    """Writes a long input's last utterance only (a meeting's 22 s before its last sentence went
    unwritten this way); a short input gets `rerun_words` words a second, with word times."""

    def __init__(self, rerun_words=2.0, first_from=6.6):
        super().__init__(cap=4)
        self.rerun_words, self.first_from = rerun_words, first_from

    def transcribe_batch(self, audios, language="auto"):
        from webui.modules.engines.base import LocalWord

        self.batches.append([a.size for a in audios])
        outs = []
        for a in audios:
            seconds = a.size / 16000
            start, rate = (self.first_from, 2.0) if seconds > 10 else (0.0, self.rerun_words)
            count = max(1, int((seconds - start) * rate))
            step = (seconds - start) / count
            words = tuple(LocalWord(start + k * step, start + (k + 0.8) * step, f" w{k}") for k in range(count))
            outs.append(EngineOutput((LocalText(start, seconds, "".join(w.text for w in words).strip(), words),), "en"))
        return outs


def test_speech_before_the_first_word_runs_again_and_its_text_is_added_before_it():
    chunk = _two_utterances()
    engine = LateStartEngine()
    first = engine.transcribe_batch([chunk.audio])[0]
    assert not second_pass.too_sparse(first, chunk.speech_seconds)  # too many words to count as sparse
    redo = second_pass.plan([chunk], [first], retry_tail=2.0)
    assert [(r.start, r.end, r.replaces, r.checked) for r in redo] == [(0.0, pytest.approx(6.6), False, True)]
    engine.batches.clear()
    out = _run_engine(engine, [chunk], "en", _Tally(), None, retry_tail=2.0)[0]
    assert len(engine.batches) == 2 and engine.batches[1] == [int(6.6 * 16000)]
    assert [p.start for p in out.pieces] == [0.0, pytest.approx(6.6)]  # the added text first, in order
    assert out.pieces[1].text == first.pieces[0].text  # the first text stays as it was
    # A gap of under UNWRITTEN_SECONDS of speech is left alone.
    assert second_pass.plan([chunk], [LateStartEngine(first_from=1.5).transcribe_batch([chunk.audio])[0]], 2.0) == []


def test_a_skipped_stretch_whose_text_cannot_account_for_it_adds_nothing():
    """Over a music bed Whisper wrote a lone "off." for 3 s of what the VAD took for speech:
    a stretch's text is added only when it is dense enough and Whisper's own marks pass."""
    chunk = _two_utterances()
    engine = LateStartEngine(rerun_words=0.1)
    out = _run_engine(engine, [chunk], "en", _Tally(), None, retry_tail=2.0)[0]
    assert len(engine.batches) == 2  # it was run again ...
    assert [p.start for p in out.pieces] == [pytest.approx(6.6)]  # ... and its lone word dropped
    piece = chunk.slice(0.0, 6.6)
    dense = LateStartEngine().transcribe_batch([piece.audio])[0]
    checked = second_pass.Redo(0, 0.0, 6.6, False, True)
    assert second_pass.keeps(checked, piece, dense)
    failed = replace(dense, pieces=tuple(replace(p, scores=Scores(-1.5, 0.1, 1.2, 0.0)) for p in dense.pieces))
    assert not second_pass.keeps(checked, piece, failed)
    assert second_pass.keeps(replace(checked, checked=False), piece, failed)  # other reruns: as before
