"""The model's own scores per subtitle line (transcript.Scores): from the Whisper engine through
lines, checkpoints and History to verbose_json; absent, never made up, where the engine has none.
(The OpenAI client's view over HTTP: test_openai_api.py.)"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.conftest import DATA
from tests.fakes import EchoEngine
from webui.modules import checkpoint
from webui.modules.engines.base import EngineOutput, EngineSettings, LocalText
from webui.modules.engines.whisper_ct2 import word_tokens
from webui.modules.events import Finished, WindowCounts, WindowDone
from webui.modules.history import History
from webui.modules.lines import tidy_cues
from webui.modules.options import PipelineOptions
from webui.modules.pipeline import transcribe
from webui.modules.transcript import Scores, TimedText, Transcript, join_scores, render
from webui.openai_api import verbose_json

SCORE_KEYS = {"tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob", "seek"}


def final(path, options: PipelineOptions, engine, resume=None, store=None) -> Transcript:
    events = transcribe(path, options, engine=engine, resume=resume)
    if store is not None:
        events = checkpoint.persist(events, store, path, options, resuming=resume is not None)
    done = [e for e in events if isinstance(e, Finished)]
    return done[-1].transcript


# --- Whisper: real values ------------------------------------------------------------------

def test_whisper_pieces_carry_the_decodes_scores_and_their_words_share_its_tokens(whisper_engine):
    from faster_whisper.tokenizer import Tokenizer
    from webui.modules.audio import decode

    tokenizer = Tokenizer(whisper_engine.model.hf_tokenizer, True, task="transcribe", language="en")
    jfk, other = decode(DATA / "jfk.flac"), decode(DATA / "two_cities.wav")[: 25 * 16_000]
    outputs = whisper_engine.transcribe_batch([jfk, other], "en")
    scores = [o.pieces[0].scores for o in outputs]
    for out in outputs:
        for piece in out.pieces:
            s = piece.scores
            assert s is not None and s.avg_logprob < 0 and 0 <= s.no_speech_prob <= 1 and s.compression_ratio > 0
            assert s.temperature == 0.0 and s.tokens and tokenizer.decode(list(s.tokens)).strip() == piece.text
            assert piece.words and all(w.tokens for w in piece.words)
            assert tuple(t for w in piece.words for t in w.tokens) == s.tokens  # cut at word boundaries
            assert all(tokenizer.decode(list(w.tokens)) == w.text for w in piece.words)
    assert scores[0].avg_logprob != scores[1].avg_logprob and scores[0].tokens != scores[1].tokens


def test_whisper_lines_have_their_own_tokens_and_the_inputs_scores(whisper_engine):
    """jfk is one input split into lines at its pauses: every line has the tokens of its own
    words and the decode's avg_logprob, no_speech_prob and compression_ratio."""
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(whisper_engine.model.hf_tokenizer, True, task="transcribe", language="en")
    t = final(DATA / "jfk.flac", PipelineOptions(engine=EngineSettings(language="en"), itn=False), whisper_engine)
    assert len(t.segments) >= 2
    for line in t.segments:
        assert line.scores is not None and line.scores.tokens
        assert tokenizer.decode(list(line.scores.tokens)).strip() == line.text
    assert len({(s.scores.avg_logprob, s.scores.no_speech_prob, s.scores.compression_ratio) for s in t.segments}) == 1
    segments = verbose_json(t, False)["segments"]
    assert [s["tokens"] for s in segments] == [list(line.scores.tokens) for line in t.segments]
    assert all(s["avg_logprob"] == t.segments[0].scores.avg_logprob and "seek" not in s for s in segments)


def test_word_tokens_cut_a_segments_tokens_at_its_words_or_give_up():
    vocabulary = {1: " And", 2: " so", 3: ",", 4: " ask", 5: "", 9: "<|0.00|>"}

    def decode(ids):
        return "".join(vocabulary[i] for i in ids if i != 9)

    assert word_tokens((9, 1, 2, 3, 4, 9), [" And", " so,", " ask"], decode) == [(9, 1), (2, 3), (4, 9)]
    assert word_tokens((1, 5, 2), [" And", " so"], decode) == [(1,), (5, 2)]
    assert word_tokens((1, 2), [" And", " sew"], decode) is None  # the words do not spell the tokens
    assert word_tokens((1, 2, 4), [" And", " so"], decode) is None  # text left over
    assert word_tokens((1,), [], decode) is None


# --- engines without scores: the keys are left out -------------------------------------------

def test_a_funasr_models_lines_have_no_score_fields(tmp_path):
    from tiny_models import build_tiny_paraformer
    from webui.modules.engines.funasr import FunASREngine

    build_tiny_paraformer(tmp_path / "paraformer")
    engine = FunASREngine(EngineSettings(model=str(tmp_path / "paraformer"), device="cpu"))
    t = final(DATA / "goforward.wav", PipelineOptions(engine=EngineSettings(language="zh"), itn=False), engine)
    assert t.segments and all(s.scores is None for s in t.segments)
    body = verbose_json(t, True)
    assert body["segments"] and all(set(s) == {"id", "start", "end", "text"} for s in body["segments"])


def test_a_transcript_without_scores_gives_segments_without_those_keys():
    t = Transcript("a.wav", 3.0, "sensevoice", "en", "Hello there.",
                   segments=[TimedText(0.0, 1.0, "Hello"), TimedText(1.2, 3.0, "there.")])
    assert all(not SCORE_KEYS & set(s) for s in verbose_json(t, False)["segments"])


# --- lines joined, writers, History, checkpoints ------------------------------------------------

A = Scores(-0.2, 0.1, 1.5, 0.0, (1, 2, 3))
B = Scores(-0.6, 0.3, 1.2, 0.0, (4,))


def test_a_joined_line_weights_avg_logprob_by_tokens_and_keeps_the_worst_of_the_rest():
    joined = join_scores(A, B)
    assert joined == Scores(pytest.approx(-0.3), 0.3, 1.5, 0.0, (1, 2, 3, 4))
    assert join_scores(A, replace(B, tokens=None)) == Scores(pytest.approx(-0.4), 0.3, 1.5, 0.0, None)
    assert join_scores(A, None) is None and join_scores(None, None) is None
    assert join_scores(A, replace(A, tokens=(7,))).avg_logprob == A.avg_logprob  # one decode: its value
    # tidy_cues joins a too-short line to its neighbour: the scores follow the text
    cues = tidy_cues([TimedText(0.0, 2.0, "Hello there", scores=A), TimedText(2.05, 2.1, "you.", scores=B),
                      TimedText(2.15, 4.0, "Bye.", scores=B)])
    assert [(c.text, c.scores) for c in cues] == [("Hello there you.", joined), ("Bye.", B)]
    cues = tidy_cues([TimedText(0.0, 2.0, "Hello", scores=A), TimedText(3.0, 4.0, "you.")])
    assert [c.scores for c in cues] == [A, None]


def scored() -> Transcript:
    return Transcript("talk.wav", 5.0, "whisper-base", "en", "Hello there. Twenty three.", "Hello there. 23.",
                      [TimedText(0.0, 1.5, "Hello there.", scores=A),
                       TimedText(2.0, 5.0, "Twenty three.", "23.", replace(B, tokens=None)),
                       TimedText(5.0, 5.0, "Hm.")])


def test_txt_srt_and_vtt_do_not_change_with_scores():
    t = scored()
    bare = replace(t, segments=[replace(s, scores=None) for s in t.segments])
    for fmt in ("txt", "srt", "vtt"):
        assert render(t, fmt) == render(bare, fmt)


def test_history_keeps_the_scores_and_old_rows_without_them_still_load(tmp_path):
    t = scored()
    data = json.loads(json.dumps(t.to_dict()))
    assert Transcript.from_dict(data) == t
    assert data["segments"][0]["scores"]["tokens"] == [1, 2, 3] and "tokens" not in data["segments"][1]["scores"]
    assert "scores" not in data["segments"][2]
    history = History(tmp_path / "history.db")
    job = history.create_job("talk.wav", "/x/talk.wav", "whisper-base", {})
    history.finish_job(job, t)
    assert history.get(job).to_transcript() == t
    assert verbose_json(history.get(job).to_transcript(), False) == verbose_json(t, False)
    old = {"file": "talk.wav", "duration": 5.0, "model": "whisper-base", "text": "Hello there.",
           "segments": [{"start": 0.0, "end": 1.5, "text": "Hello there.", "text_itn": ""}]}
    loaded = Transcript.from_dict(old)
    assert loaded.segments == [TimedText(0.0, 1.5, "Hello there.")] and loaded.segments[0].scores is None
    assert not SCORE_KEYS & set(verbose_json(loaded, False)["segments"][0])


class ScoringEngine(EchoEngine):
    """EchoEngine with scores that differ per input, as Whisper's do."""

    def transcribe_batch(self, audios, language="auto"):
        outs = super().transcribe_batch(audios, language)
        return [EngineOutput(tuple(replace(p, scores=Scores(-a.size % 997 / 1000 - 0.01, a.size % 89 / 100,
                                                            1.0 + a.size % 7 / 10, 0.0, (a.size % 50_000, 7)))
                                   for p in out.pieces), out.language)
                for out, a in zip(outs, audios)]


def test_a_resumed_run_gives_the_same_scores(tmp_path):
    long = DATA / "two_cities.wav"
    options = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=10.0,
                              first_window_seconds=10.0)
    full = final(long, options, ScoringEngine(), store=checkpoint.Sidecar(tmp_path / "full.jsonl"))
    assert len(full.segments) >= 3 and all(s.scores is not None for s in full.segments)
    assert len({s.scores for s in full.segments}) == len(full.segments)
    sidecar = checkpoint.Sidecar(tmp_path / "killed.jsonl")
    sidecar.path.write_text("\n".join((tmp_path / "full.jsonl").read_text().splitlines()[:3]) + "\n")
    head, stored = sidecar.load()
    resume = checkpoint.resume_from(long, options, head, stored)
    assert resume is not None and [w.index for w in resume.done] == [0, 1]
    assert all(p.scores is not None for w in resume.done for r in w.results for p in r.pieces)
    assert final(long, options, ScoringEngine(), resume=resume, store=sidecar) == full


def test_a_checkpoint_written_before_scores_were_kept_still_resumes():
    window = WindowDone(0, (), "en", WindowCounts())
    data = checkpoint.window_to_dict(window)
    data["results"] = [{"segment": [0, 0.0, 10.0], "speech": 8.0, "language": "en", "itn_applied": False,
                        "pieces": [[0.5, 2.0, "hello", ""], [3.0, 4.0, "there", "", A.to_dict()]]}]
    (result,) = checkpoint._window_from_dict(json.loads(json.dumps(data))).results
    assert result.pieces == (TimedText(0.5, 2.0, "hello"), TimedText(3.0, 4.0, "there", scores=A))


def test_engine_outputs_without_scores_stay_without(tmp_path):
    """EchoEngine reports no scores: its lines have none (nothing is filled in on the way)."""
    t = final(DATA / "goforward.wav", PipelineOptions(itn=False), EchoEngine())
    assert t.segments and all(s.scores is None for s in t.segments)
    assert all(not SCORE_KEYS & set(s) for s in verbose_json(t, False)["segments"])
