"""The bundled Whisper engine: each input of a batch is timed as if it ran alone."""

import threading
from contextlib import contextmanager

import numpy as np
import pytest

from tests.conftest import DATA
from webui.modules.audio import decode


@contextmanager
def another_window(engine):
    """Another window holding a lane of `engine` (lanes.py, as the pipeline's next window would)
    until the block ends or the event it yields is set; skipped where there is one worker."""
    if engine.workers < 2:
        pytest.skip("one CPU core: one CTranslate2 worker, nothing runs side by side")
    entered, leave = threading.Event(), threading.Event()

    def hold():
        with engine.lane():
            entered.set()
            leave.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(10)
    try:
        yield leave
    finally:
        leave.set()
        holder.join()


def test_word_times_do_not_leak_between_inputs_or_calls(whisper_engine):
    hum = (0.01 * np.sin(np.arange(32_000) * 2 * np.pi * 60 / 16_000)).astype(np.float32)
    jfk = np.concatenate([hum, decode(DATA / "jfk.flac")])  # speech from about 1.9 s
    other = decode(DATA / "two_cities.wav")[: 28 * 16_000]

    def first_word(batch, k):
        return whisper_engine.transcribe_batch(batch, "en")[k].pieces[0].words[0]

    alone = first_word([jfk], 0)
    assert 1.5 < alone.start < 2.3, alone  # not smeared back over the hum
    assert first_word([other, jfk], 1) == alone  # after a long input in the same batch
    assert first_word([jfk], 0) == alone  # and in the next call


def test_japanese_and_korean_decode_with_a_beam_and_the_rest_greedily(whisper_engine):
    from webui.modules.engines.whisper_ct2 import WhisperEngine

    assert whisper_engine.beam_size is None  # the default: by language
    for language, beam in (("ja", 5), ("ko", 5), ("zh", 1), ("zh-TW", 1), ("yue", 1), ("en", 1), ("de", 1), ("", 1)):
        assert whisper_engine.beam_for(language) == beam, language
        assert whisper_engine._options(language).beam_size == beam
    fixed = WhisperEngine.__new__(WhisperEngine)  # an engine given its own beam keeps it everywhere
    fixed.beam_size = 2
    assert {fixed.beam_for(lang) for lang in ("zh", "en", "")} == {2}


class _Counting:
    """Stands in for the CTranslate2 model: counts encoder inputs and records each decode."""

    def __init__(self, inner):
        self.inner, self.encoded, self.decodes, self.aligned = inner, 0, [], []
        self.calls = []  # (prompts, results) of each decode
        self.detected = []  # rows given to each language detection

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, features, *args, **kwargs):
        self.encoded += int(features.shape[0])
        return self.inner.encode(features, *args, **kwargs)

    def generate(self, encoder_output, prompts, **kwargs):
        self.decodes.append((len(prompts), kwargs.get("beam_size"), kwargs.get("sampling_temperature", 0.0)))
        results = self.inner.generate(encoder_output, prompts, **kwargs)
        self.calls.append((prompts, results))
        return results

    def detect_language(self, encoder_output, *args, **kwargs):
        self.detected.append(int(encoder_output.shape[0]))
        return self.inner.detect_language(encoder_output, *args, **kwargs)

    def align(self, encoder_output, start_sequence, text_tokens, *args, **kwargs):
        self.aligned.append(len(text_tokens))
        return self.inner.align(encoder_output, start_sequence, text_tokens, *args, **kwargs)


def _counting(engine, monkeypatch) -> _Counting:
    counting = _Counting(engine.model.model)
    monkeypatch.setattr(engine.model, "model", counting)
    return counting


def test_the_language_is_detected_from_the_batch_encoder_pass_not_a_second_one(whisper_engine, monkeypatch):
    jfk = decode(DATA / "jfk.flac")
    counting = _counting(whisper_engine, monkeypatch)
    (out,) = whisper_engine.transcribe_batch([jfk], "auto")
    assert out.language == "en" and "country" in out.pieces[0].text
    assert counting.encoded == 1  # one input, one encoder pass: detection reused it
    assert [d[:2] for d in counting.decodes] == [(1, 1)]  # English: greedy, one decode
    counting.detected.clear()
    counting.encoded = 0
    outs = whisper_engine.transcribe_batch([jfk, jfk[: 5 * 16_000], jfk], "auto")
    assert [o.language for o in outs] == ["en"] * 3
    # every input heard once (a recording may change language: language_id.py), from the encoder
    # output the decode uses: a decoder step per input, in at most two calls (the halves)
    assert sum(counting.detected) == 3 and len(counting.detected) <= 2 and counting.encoded == 3
    # a language the user chose is not detected at all
    from dataclasses import replace

    monkeypatch.setattr(whisper_engine, "settings", replace(whisper_engine.settings, language="en"))
    counting.detected.clear()
    assert [o.language for o in whisper_engine.transcribe_batch([jfk, jfk], "en")] == ["en", "en"]
    assert counting.detected == []


def test_accurate_mode_decodes_with_a_beam_and_falls_back_to_higher_temperatures(whisper_engine, monkeypatch):
    from dataclasses import replace

    from webui.modules.engines import whisper_decode

    jfk = decode(DATA / "jfk.flac")
    other = decode(DATA / "goforward.wav")
    monkeypatch.setattr(whisper_engine, "settings", replace(whisper_engine.settings, accurate=True))
    assert whisper_engine.beam_for("en") == 5 and whisper_engine.beam_for("zh") == 5
    options = whisper_engine._options("en")
    assert options.temperatures == list(whisper_decode.FALLBACK_TEMPERATURES) and options.best_of == 5
    # The second input's first decode fails Whisper's checks: only it is decoded again, sampled.
    failing = whisper_decode.Decoded.needs_fallback

    def needs_fallback(decoded, opts):
        text = whisper_engine.model.hf_tokenizer.decode(decoded.tokens).lower()
        return (decoded.temperature == 0.0 and "forward" in text) or failing(decoded, opts)

    monkeypatch.setattr(whisper_decode.Decoded, "needs_fallback", needs_fallback)
    counting = _counting(whisper_engine, monkeypatch)
    first, second = whisper_engine.transcribe_batch([jfk, other], "en")
    assert counting.encoded == 2  # the fallback reuses the batch's encoder output
    # At temperature 0 both inputs (two halves side by side on two CPU workers); then only the second.
    assert sorted(counting.decodes[:-1]) == [(k, 5, 0.0) for k in _halves(whisper_engine, 2)]
    assert counting.decodes[-1] == (1, 1, 0.2)
    assert first.pieces[0].scores.temperature == 0.0 and second.pieces[0].scores.temperature == 0.2
    assert "your country" in first.pieces[0].text and "forward" in second.pieces[0].text.lower()
    assert first.pieces[0].words and second.pieces[0].words  # word times for both


def test_when_every_temperature_fails_the_likeliest_calm_decode_is_kept():
    from types import SimpleNamespace

    from webui.modules.engines.whisper_decode import Decoded, pick

    opts = SimpleNamespace(no_speech_threshold=0.6, log_prob_threshold=-1.0, compression_ratio_threshold=2.4)
    loop = Decoded([1], -0.2, 0.0, 0.0, 3.0)         # likely but repetitive
    weak = Decoded([2], -1.3, 0.0, 0.2, 1.2)
    weaker = Decoded([3], -1.6, 0.0, 0.4, 1.1)
    assert loop.needs_fallback(opts) and weak.needs_fallback(opts)
    assert pick([loop, weak, weaker], opts) is weak
    assert pick([loop], opts) is loop  # greedy mode: one decode, kept as it is
    silence = Decoded([4], -1.5, 0.9, 0.0, 1.0)       # weak but confidently no speech: no fallback
    assert not silence.needs_fallback(opts)


def _halves(engine, n: int) -> list[int]:
    """The sizes a run of n inputs is shared out in: two halves side by side on two CPU workers."""
    return [n] if engine.workers < 2 or n < 2 else [(n + 1) // 2, n // 2]


def test_on_the_cpu_greedy_decodes_the_whole_batch_and_beams_decode_in_groups(whisper_engine, monkeypatch):
    """8 inputs: encoded 4 at a time (the encoder's buffers grow with the batch), decoded in one
    greedy run (fewer decoder steps); with a beam (5 hypotheses each) 4 at a time. Each run goes
    as two halves side by side on CTranslate2's two CPU workers. Each input's text is the one it
    gets in a batch of 4."""
    import os
    from dataclasses import replace

    assert whisper_engine.workers == min(2, os.cpu_count() or 1)
    clips = [decode(DATA / name)[: 12 * 16_000] for name in ("jfk.flac", "goforward.wav")] * 4
    monkeypatch.setattr(whisper_engine, "settings", replace(whisper_engine.settings, cpu_batch_cap=4, cpu_decode_cap=8))
    assert whisper_engine.batch_limit(30.0) == 8
    counting = _counting(whisper_engine, monkeypatch)
    encoded_sizes = []
    encode = counting.encode
    monkeypatch.setattr(counting, "encode", lambda f, *a, **k: (encoded_sizes.append(f.shape[0]), encode(f, *a, **k))[1])
    greedy = whisper_engine.transcribe_batch(clips, "en")
    assert sorted(encoded_sizes) == sorted(_halves(whisper_engine, 4) * 2)
    assert sorted(d[:2] for d in counting.decodes) == [(k, 1) for k in sorted(_halves(whisper_engine, 8))]
    # Word times are aligned 4 inputs at a time too (align holds inputs x tokens x vocabulary
    # logits), and come out as a batch of 4 times them, to the 20-ms frame.
    assert sorted(counting.aligned) == sorted(_halves(whisper_engine, 4) * 2)
    alone = whisper_engine.transcribe_batch(clips[:4], "en")
    assert [o.pieces[0].text for o in greedy] == [o.pieces[0].text for o in alone] * 2
    for got, want in zip(greedy, alone * 2):
        pairs = list(zip(got.pieces[0].words, want.pieces[0].words, strict=True))
        assert pairs and all(a.text == b.text and abs(a.start - b.start) <= 0.021 and abs(a.end - b.end) <= 0.021
                             for a, b in pairs)
    counting.decodes.clear()
    encoded_sizes.clear()
    monkeypatch.setattr(whisper_engine, "beam_size", 5)
    beam = whisper_engine.transcribe_batch(clips, "en")
    assert sorted(encoded_sizes) == sorted(_halves(whisper_engine, 4) * 2)
    assert sorted(d[:2] for d in counting.decodes) == [(k, 5) for k in sorted(_halves(whisper_engine, 4) * 2)]
    assert all(o.pieces and o.pieces[0].words for o in beam)


def test_the_two_halves_of_a_batch_decode_at_the_same_time_and_a_failure_waits_for_both(whisper_engine, monkeypatch):
    """On two CPU workers the halves of a decode overlap in time (CTranslate2 lets go of the GIL);
    when one half fails, the error comes only after the other half has finished (no CTranslate2
    call is left running behind a failed batch)."""
    import time

    if whisper_engine.workers < 2:
        pytest.skip("one CPU core: one CTranslate2 worker, nothing runs side by side")
    counting = _counting(whisper_engine, monkeypatch)
    spans = []
    generate = counting.generate

    def timed(*args, **kwargs):
        began = time.perf_counter()
        result = generate(*args, **kwargs)
        spans.append((began, time.perf_counter(), threading.get_ident()))
        return result

    monkeypatch.setattr(counting, "generate", timed)
    clips = [decode(DATA / "jfk.flac")] * 4
    outputs = whisper_engine.transcribe_batch(clips, "en")
    assert len({o.pieces[0].text for o in outputs}) == 1 and "country" in outputs[0].pieces[0].text
    (a0, a1, ta), (b0, b1, tb) = sorted(spans)
    assert ta != tb and b0 < a1  # two threads, the second began before the first ended

    finished = []

    def work(rows):
        if rows[0] == 0:
            time.sleep(0.3)
            finished.append(rows)
            return rows
        raise RuntimeError("second half failed")

    with pytest.raises(RuntimeError, match="second half failed"):
        whisper_engine._side_by_side(work, [0, 1, 2, 3])
    assert finished == [[0, 1]]


def test_beside_another_window_the_halves_run_in_turn_and_the_second_moves_when_that_window_ends(whisper_engine):
    """While the pipeline runs another window beside this one (lanes.py), the halves of a batch run
    one after the other on the caller's thread (the other worker is that window's); once the other
    window ends, the half not yet started goes to a helper at once (the free worker)."""
    import time

    runs = []

    def work(rows):
        runs.append((threading.current_thread().name, tuple(rows), time.perf_counter()))
        time.sleep(0.4 if rows == [0, 1] else 0.05)
        return rows

    with another_window(whisper_engine) as leave, whisper_engine.lane():
        assert whisper_engine._side_by_side(work, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
        assert [(r[0], r[1]) for r in runs] == [(threading.current_thread().name, (0, 1)),
                                                (threading.current_thread().name, (2, 3))]
        runs.clear()
        threading.Timer(0.1, leave.set).start()  # the other window ends during the first half
        assert whisper_engine._side_by_side(work, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
        (first_thread, _, first_began), (second_thread, _, second_began) = sorted(runs, key=lambda r: r[1])
        assert second_thread == "whisper-half" and second_began < first_began + 0.3

    def failing(rows):
        raise RuntimeError("first half failed")

    with another_window(whisper_engine), whisper_engine.lane(), pytest.raises(RuntimeError, match="first half failed"):
        whisper_engine._side_by_side(failing, [0, 1, 2, 3])
    assert not [t for t in threading.enumerate() if t.name == "whisper-half"]


def test_a_greedy_decode_runs_the_batch_whole_beside_another_window_and_in_halves_when_alone(whisper_engine, monkeypatch):
    """A decode step costs little more for more rows, so beside another window (its worker taken)
    a greedy decode runs up to half of cpu_decode_cap rows in one call rather than as halves in turn
    (no more rows in flight than two halves: each holds its cross-attention keys and values); alone
    it still splits the batch over both workers. Only at int8, where a row's decode does not
    depend on its neighbours (the next tests); in float32 the halves stay."""
    def work(rows):
        return rows

    assert whisper_engine.compute_type.startswith("int8")
    with whisper_engine.lane():
        assert whisper_engine._greedy_side_by_side(work, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    with another_window(whisper_engine), whisper_engine.lane():
        assert whisper_engine._greedy_side_by_side(work, [0, 1, 2, 3]) == [[0, 1, 2, 3]]
        cap = whisper_engine.settings.cpu_decode_cap
        many = list(range(cap))
        assert whisper_engine._greedy_side_by_side(work, many) == [many[: (cap + 1) // 2], many[(cap + 1) // 2:]]
        assert whisper_engine._side_by_side(work, [0, 1, 2, 3]) == [[0, 1], [2, 3]]  # align keeps its halves
        monkeypatch.setattr(whisper_engine, "compute_type", "float32")
        assert whisper_engine._greedy_side_by_side(work, [0, 1, 2, 3]) == [[0, 1], [2, 3]]


def test_beside_another_window_a_beam_decode_keeps_its_halves(whisper_engine, monkeypatch):
    """Each row of a beam is several hypotheses, each with its own cross-attention: a beam (Japanese,
    Korean, accurate mode) decodes its halves in turn beside another window, as before; greedy
    English runs the same four inputs in one call."""
    from dataclasses import replace

    jfk = decode(DATA / "jfk.flac")
    counting = _counting(whisper_engine, monkeypatch)
    # languages as given (not followed to what the speech sounds like: English here)
    monkeypatch.setattr(whisper_engine, "settings", replace(whisper_engine.settings, language="en"))
    with another_window(whisper_engine), whisper_engine.lane():
        whisper_engine.transcribe_batch([jfk] * 4, "en")
        assert [d[:2] for d in counting.decodes] == [(4, 1)]
        counting.decodes.clear()
        whisper_engine.transcribe_batch([jfk] * 4, "ja")
        assert [d[:2] for d in counting.decodes][:2] == [(2, 5), (2, 5)]


def test_at_int8_a_rows_decode_is_the_same_alone_in_halves_or_whole(whisper_engine):
    """What lets a decode run whole or in halves as the workers allow with the same text (a resumed
    run repeats it): each row's tokens and score are bit-identical whatever rows share its call,
    greedy with forced prefixes of different lengths (Mandarin sent back, English resumed) and
    at beam 5 (Japanese, Korean, accurate mode)."""
    import ctranslate2
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    model = whisper_engine.model
    zh = sorted((DATA / "real_zh").glob("*.wav"))
    audios = [decode(zh[0]), decode(DATA / "jfk.flac"), decode(zh[1]), decode(DATA / "two_cities.wav")[: 20 * 16_000]]
    features = np.ascontiguousarray(np.stack([pad_or_trim(model.feature_extractor(a)[..., :-1]) for a in audios]))
    encoded = np.asarray(model.model.encode(ctranslate2.StorageView.from_array(features)))
    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="zh")
    prompt = model.get_prompt(tokenizer, [], without_timestamps=False)
    free = model.model.generate(ctranslate2.StorageView.from_array(encoded), [prompt] * 4, beam_size=1)
    prompts = [prompt + list(free[k].sequences_ids[0][: 6 * k]) for k in range(4)]  # 0, 6, 12, 18 tokens forced

    def run(rows, beam):
        results = model.model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[rows])),
                                       [prompts[k] for k in rows], beam_size=beam, max_length=160,
                                       suppress_blank=True, suppress_tokens=[-1], return_scores=True,
                                       return_no_speech_prob=True)
        return {k: (r.sequences_ids[0], r.scores[0], r.no_speech_prob) for k, r in zip(rows, results)}

    for beam in (1, 5):
        alone = {k: v for k in range(4) for v in run([k], beam).values()}
        assert all(alone[k][0] for k in range(4))
        assert run([0, 1, 2, 3], beam) == alone, beam
        assert {**run([0, 1], beam), **run([2, 3], beam)} == alone, beam
        assert {**run([0, 2], beam), **run([3, 1], beam)} == alone, beam


def test_chinese_decodes_with_timestamp_tokens_and_other_languages_without(whisper_engine):
    """Whisper packs Mandarin utterances into one input only when it may close each with a
    timestamp; English keeps faster-whisper's batched decoding (no timestamp tokens)."""
    for language, with_timestamps in (("zh", True), ("zh-TW", True), ("yue", True), ("en", False), ("ja", False),
                                      ("", False)):
        assert whisper_engine._options(language).without_timestamps is not with_timestamps, language


def test_the_segment_left_open_at_the_end_of_an_input_is_kept_unless_it_loops(whisper_engine):
    """A batched decoder cannot seek back to a segment the input ends inside: its text is kept,
    timed from its opening timestamp to the input's end; a looping one is dropped (the second
    pass then runs that stretch again, the text having stopped early)."""
    from faster_whisper.tokenizer import Tokenizer

    from webui.modules.engines.whisper_decode import split_by_timestamps

    model = whisper_engine.model
    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="zh")

    def ts(seconds):
        return tokenizer.timestamp_begin + int(round(seconds / model.time_precision))

    def split(tail):
        tokens = [ts(0.0), *tokenizer.encode("甚至出现交易"), ts(2.0), ts(2.5), *tail]
        return [(round(s["start"], 2), round(s["end"], 2), tokenizer.decode(s["tokens"]))
                for s in split_by_timestamps(model, tokenizer, tokens, 0.0, 1000, 9.0, 2.4)]

    assert split(tokenizer.encode("一二线城市")) == [(0.0, 2.0, "甚至出现交易"), (2.5, 9.0, "一二线城市")]
    assert split(tokenizer.encode("哈哈" * 40)) == [(0.0, 2.0, "甚至出现交易")]
    assert split([]) == [(0.0, 2.0, "甚至出现交易")]


def _prompts(voice: str, order: list[int], gap: float = 0.6) -> np.ndarray:
    """Telephone prompts of one voice joined as the pipeline packs speech: pauses of `gap` s."""
    from tests import conversations as conv

    pause = np.zeros(int(gap * 16_000), np.float32)
    clips = conv.voice(voice)
    return np.concatenate([part for k in order for part in (clips[k], pause)][:-1])


def test_an_input_that_ends_early_resumes_from_its_own_text_without_a_second_encoder_pass(whisper_engine, monkeypatch):
    """Whisper base writes the first of these ten French prompts and ends (4 s of 25); the
    decode goes on from its text over the same encoder output and reaches the end. Chosen from
    40 random orders as one that ends early with numpy's BLAS on one thread or two (features
    differ in their last bits between the two, and an earlier order ended early on two only)."""
    from tests import conversations as conv
    from webui.modules.engines import whisper_decode

    if conv.missing(["fr_f"]):
        pytest.skip("needs Debian package asterisk-core-sounds-fr-g722 (.ci/run installs it)")
    audio = _prompts("fr_f", [508, 437, 321, 476, 464, 370, 306, 254, 184, 249])
    seconds = audio.size / 16_000

    def last_word_end(out):
        return out.pieces[-1].words[-1].end

    monkeypatch.setattr(whisper_decode, "MAX_RESUMES", 0)
    (stopped,) = whisper_engine.transcribe_batch([audio], "fr")
    assert seconds - last_word_end(stopped) > whisper_decode.UNWRITTEN_SECONDS  # the early end this is about
    monkeypatch.setattr(whisper_decode, "MAX_RESUMES", 3)
    counting = _counting(whisper_engine, monkeypatch)
    (out,) = whisper_engine.transcribe_batch([audio], "fr")
    assert counting.encoded == 1  # resumed over the encoder output it had
    # each round is one decode whose prefix is the text so far: no extra call to get past its end
    (prompt,), (first,) = counting.calls[0]
    rounds, text = counting.calls[1:], list(first.sequences_ids[0])
    assert 1 <= len(rounds) <= whisper_decode.MAX_RESUMES
    for (prompts, (result,)) in rounds:
        assert prompts == [prompt + text] and len(result.sequences_ids[0]) > len(text)
        text = list(result.sequences_ids[0])
    opened = rounds[0][1][0].sequences_ids[0]
    assert len(opened) > len(first.sequences_ids[0]) + 10  # writes on from there, not a token at a time
    assert seconds - last_word_end(out) < whisper_decode.UNWRITTEN_SECONDS
    first, whole = " ".join(p.text for p in stopped.pieces), " ".join(p.text for p in out.pieces)
    assert whole.startswith(first.rstrip(".")) and len(whole.split()) > 2 * len(first.split())
    assert "message suivant" in whole.split(first.rstrip("."), 1)[1]  # the later prompts' words
    words = [w for p in out.pieces for w in p.words]
    assert all(a.start <= b.start for a, b in zip(words, words[1:])) and words[-1].end <= seconds + 0.05
    assert -1.0 < out.pieces[0].scores.avg_logprob < 0 and out.pieces[0].scores.compression_ratio < 2.4


def test_what_counts_as_text_written_through_to_where_it_stops():
    from webui.modules.engines.whisper_decode import ended_early, written_through

    def words(*times):
        return [{"start": a, "end": b, "word": " w"} for a, b in times]

    steady = words(*[(0.2 + 0.5 * k, 0.6 + 0.5 * k) for k in range(10)])  # 10 words in 5 s
    assert written_through(steady, 0.0)
    assert ended_early([{"words": steady}], 20.0, 0.0)  # 15 s after its last word
    assert not ended_early([{"words": steady}], 6.0, 0.0)  # stops within 2 s of the end
    origin = 30_000.0  # an input's time origin in a batch: the same judgement
    shifted = [dict(w, start=w["start"] + origin, end=w["end"] + origin) for w in steady]
    assert ended_early([{"words": shifted}], 20.0, origin)
    gap = steady[:5] + words(*[(5.8 + 0.5 * k, 6.2 + 0.5 * k) for k in range(5)])  # 3 s of speech unwritten inside
    assert not written_through(gap, 0.0) and not ended_early([{"words": gap}], 20.0, 0.0)
    late_start = words(*[(2.5 + 0.5 * k, 2.9 + 0.5 * k) for k in range(10)])  # the first utterance skipped
    assert not written_through(late_start, 0.0)
    stretched = steady[:9] + words((4.7, 8.5))
    assert not written_through(stretched, 0.0)
    thin = words((0.1, 1.5), (3.0, 4.2), (5.5, 6.0))  # 3 words over 6 s, no long gap: speech left out
    assert not written_through(thin, 0.0)
    assert not ended_early([], 20.0, 0.0) and not ended_early([{"words": []}], 20.0, 0.0)


def test_early_ends_resume_in_place_only_for_the_default_mode_on_the_cpu_and_not_for_chinese(whisper_engine, monkeypatch):
    from dataclasses import replace

    assert whisper_engine._resumes(whisper_engine._options("fr"))
    assert not whisper_engine._resumes(whisper_engine._options("zh"))  # timestamp tokens: the second pass
    monkeypatch.setattr(whisper_engine, "settings", replace(whisper_engine.settings, accurate=True))
    assert not whisper_engine._resumes(whisper_engine._options("fr"))  # accurate mode reruns the rest
    monkeypatch.setattr(whisper_engine, "settings", replace(whisper_engine.settings, accurate=False))
    monkeypatch.setattr(whisper_engine, "device", "cuda:0")  # a row of the encoder output is a new encode there
    assert not whisper_engine._resumes(whisper_engine._options("fr"))


def _mandarin(order: list[int], gap: float = 0.6) -> tuple[np.ndarray, list[tuple[float, float]], str]:
    """Real Mandarin clips (tests/data/real_zh, in manifest order) joined as the pipeline packs
    speech, pauses of `gap` s: the audio, each clip's local (start, end), the reference."""
    import json

    folder = DATA / "real_zh"
    entries = [json.loads(line) for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if line]
    pause = np.zeros(int(gap * 16_000), np.float32)
    parts, utterances, at = [], [], 0.0
    for k in order:
        clip = decode(folder / entries[k]["audio"])
        utterances.append((at, at + clip.size / 16_000))
        at += clip.size / 16_000 + gap
        parts += [clip, pause]
    return np.concatenate(parts[:-1]), utterances, "".join(entries[k]["text"] for k in order)


def test_a_mandarin_decode_that_skipped_utterances_is_sent_back_to_them_over_the_same_encoder_output(
        whisper_engine, monkeypatch):
    """Whisper base writes the first of these four real clips and ends (4 s of 17). The decode
    is sent back to the first utterance it left unwritten: its text so far as the prefix, then
    that utterance's start as a timestamp token; it writes the rest from there without a second
    encoder pass (an input of its own per two utterances in the second pass, before)."""
    import jiwer

    from webui.modules import script
    from webui.modules.engines import whisper_decode

    audio, utterances, reference = _mandarin([2, 3, 0, 0])  # an order that skips with BLAS on 1 thread or 2

    def cer(out):
        (text,) = script.convert(["".join(p.text for p in out.pieces)], "simplified")
        return jiwer.cer(reference, "".join(ch for ch in text if ch.isalnum()))

    monkeypatch.setattr(whisper_decode, "MAX_SEEKS", 0)
    (skipped,) = whisper_engine.transcribe_batch([audio], "zh", utterances=[utterances])
    assert cer(skipped) > 0.6  # the skip this is about: one clip of four written
    monkeypatch.setattr(whisper_decode, "MAX_SEEKS", 3)
    counting = _counting(whisper_engine, monkeypatch)
    (out,) = whisper_engine.transcribe_batch([audio], "zh", utterances=[utterances])
    assert counting.encoded == 1
    (prompt,), (first,) = counting.calls[0]
    tokenizer = whisper_engine.model.hf_tokenizer
    begin = tokenizer.token_to_id("<|0.00|>")
    (sent,), _ = counting.calls[1]
    head, opening = sent[len(prompt):-1], sent[-1]
    assert sent[:len(prompt)] == prompt and list(first.sequences_ids[0][:len(head)]) == head
    # the opening is the start of an utterance the first text left unwritten
    assert opening >= begin and min(abs((opening - begin) * 0.02 - lo) for lo, _ in utterances[1:]) < 0.03
    assert cer(out) < 0.15
    words = [w for p in out.pieces for w in p.words]
    assert all(a.start <= b.start for a, b in zip(words, words[1:])) and words[-1].end <= audio.size / 16_000 + 0.05
    # without utterances (an engine call that has none) the decode stays as it was
    (alone,) = whisper_engine.transcribe_batch([audio], "zh")
    assert [p.text for p in alone.pieces] == [p.text for p in skipped.pieces]
    # on a GPU an input's rows of the encoder output are encoded again (no host view there): the
    # same text (here the "card" is the CPU, so the two encoder outputs are the same numbers)
    monkeypatch.setattr(whisper_engine, "device", "cuda:0")
    counting.encoded = 0
    (on_card,) = whisper_engine.transcribe_batch([audio], "zh", utterances=[utterances])
    assert counting.encoded > 1 and [p.text for p in on_card.pieces] == [p.text for p in out.pieces]


def test_where_a_timestamped_text_leaves_speech_unwritten():
    from webui.modules.engines.whisper_decode import MIN_UNWRITTEN, gaps

    utterances = [(0.0, 4.0), (4.6, 8.6), (9.2, 13.2), (13.8, 14.5), (15.1, 19.1)]
    whole = [(0.0, 4.0, 4.0), (4.6, 8.6, 4.0), (9.2, 13.2, 4.0), (13.8, 14.5, 0.7), (15.1, 19.1, 4.0)]
    assert gaps(whole, utterances) == []
    # the second and third utterances skipped: one stretch, each of its starts a place
    assert gaps([whole[0]] + whole[3:], utterances) == [([4.6, 9.2], 8.0)]
    # one segment over three utterances shares its text out: 3 characters (1.5 s) over 12 s is thin
    assert gaps([(0.0, 13.2, 1.5)] + whole[3:], utterances) == [([0.0, 4.6, 9.2], 12.0)]
    assert gaps([(0.0, 13.2, 12.0)] + whole[3:], utterances) == []
    # text that stops 2 s into a long utterance: from its start, or from where the text ends
    assert gaps([(0.0, 2.2, 4.5)], [(0.0, 16.0)]) == [([0.0, 2.2], 16.0)]
    # the text ends early: from where it ends inside an utterance, then the unwritten ones after
    assert gaps(whole[:2] + [(9.2, 11.0, 3.0)], utterances) == [([11.0, 13.8, 15.1], pytest.approx(2.2 + 0.7 + 4.0))]
    # a lone short utterance is not worth a decode; no text at all is all unwritten
    assert gaps(whole[:3] + whole[4:], utterances) == [] and 14.5 - 13.8 < MIN_UNWRITTEN
    assert gaps([], utterances) == [([lo for lo, _ in utterances], sum(hi - lo for lo, hi in utterances))]


def test_a_seek_keeps_the_segments_closed_before_the_place_and_opens_the_next_there(whisper_engine):
    from faster_whisper.tokenizer import Tokenizer

    from webui.modules.engines.whisper_decode import opened_segments, seek_prefix

    tokenizer = Tokenizer(whisper_engine.model.hf_tokenizer, True, task="transcribe", language="zh")

    def ts(seconds):
        return tokenizer.timestamp_begin + int(round(seconds / 0.02))

    one, two = tokenizer.encode("甚至出现交易"), tokenizer.encode("一二线城市")
    tokens = [ts(0.0), *one, ts(2.0), ts(9.0), *two, ts(11.0), tokenizer.eot]
    segs = opened_segments(tokens, tokenizer, 0.02)
    assert [(s.start, s.end, tokenizer.decode(list(s.tokens))) for s in segs] == \
        [(0.0, 2.0, "甚至出现交易"), (9.0, 11.0, "一二线城市")]
    assert seek_prefix(tokens, 4.6, tokenizer, 0.02) == [ts(0.0), *one, ts(2.0), ts(4.6)]
    assert seek_prefix(tokens, 1.9, tokenizer, 0.02) == [ts(0.0), *one, ts(2.0), ts(2.0)]  # closes within slack
    assert seek_prefix(tokens, 1.0, tokenizer, 0.02) == [ts(1.0)]
    assert seek_prefix(tokens, 12.0, tokenizer, 0.02) == tokens[:-1] + [ts(12.0)]
    # text left open at the end counts as a segment to the input's end (its end: None)
    assert opened_segments([ts(0.0), *one], tokenizer, 0.02)[0].end is None
