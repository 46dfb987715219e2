"""The Chinese script (script.py, issue 10): one script, the one the user chose, from every model.
Converted once at assemble time with OpenCC, never for Japanese or other languages, never fatal,
and not part of a checkpoint's options."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DATA
from webui.modules import checkpoint, script
from webui.modules.audio import AudioInfo
from webui.modules.engines.base import EngineOutput, LocalText
from webui.modules.events import Finished, WindowDone
from webui.modules.options import PipelineOptions, options_from_record
from webui.modules.merge import assemble
from webui.modules.pipeline import transcribe
from webui.modules.settings import AppSettings
from webui.modules.transcript import Segment, SegmentResult, TimedText, Transcript

# What Whisper wrote for Mandarin from the mainland (issue 10), and what it should read.
WHISPER_TRADITIONAL = "中國人民決心繼承"
SIMPLIFIED = "中国人民决心继承"

# One sentence in the three scripts (OpenCC s2tw / s2hk of the Simplified one, checked by hand):
# 着/著, 里/裡/裏, 说/說/説, 卫/衛/衞, 启/啟/啓 differ between Taiwan and Hong Kong; 颱風 and
# 頭髮 need the phrase tables; 显著 must survive as Simplified (tw2s alone would write 显着).
SENTENCE = {
    "zh": "我们去吃饭，台风来了，温度很高，他才来，显著的名著，看着我，里面说话，卫生，启动，为了群众，头发干净",
    "zh-TW": "我們去吃飯，颱風來了，溫度很高，他才來，顯著的名著，看著我，裡面說話，衛生，啟動，為了群眾，頭髮乾淨",
    "zh-HK": "我們去吃飯，颱風來了，温度很高，他才來，顯著的名著，看着我，裏面説話，衞生，啓動，為了羣眾，頭髮乾淨",
}


def test_setting_values_and_aliases():
    assert script.SCRIPTS == ("zh", "zh-TW", "zh-HK", "keep") and script.DEFAULT == "zh"
    for value, name in [("zh", "zh"), ("ZH-tw", "zh-TW"), ("zh_hk", "zh-HK"), ("Keep", "keep"), ("zh-CN", "zh"),
                        ("zh-Hans", "zh"), ("", "zh"), (" zh-TW ", "zh-TW")]:
        assert script.parse(value) == name
    for bad in ("zh-Hant", "traditional", "ja", 3):
        with pytest.raises(ValueError, match="script must be one of"):
            script.parse(bad)
    assert script.canonical("xx") == "xx"  # left for argparse's `choices` to name


def test_which_transcripts_are_chinese():
    for language in ("zh", "ZH", "zh-TW", "zh-hk", "zh_CN", "yue", "cmn", "cmn-Hans-CN"):
        assert script.is_chinese(language, ["hello"]), language
    for language in ("ja", "ko", "en", "de", "jw"):
        assert not script.is_chinese(language, [WHISPER_TRADITIONAL]), language
    # Unknown language (Paraformer reports none): the text decides; kana or hangul mean no.
    assert script.is_chinese("auto", [WHISPER_TRADITIONAL])
    assert script.is_chinese("", ["你好", "hello"])
    assert not script.is_chinese("auto", ["日本語の漢字を変換しない"])
    assert not script.is_chinese("", ["한국어 漢字"])
    assert not script.is_chinese("auto", ["hello", ""])


def test_traditional_from_whisper_becomes_simplified():
    assert script.convert([WHISPER_TRADITIONAL], "zh") == [SIMPLIFIED]
    assert script.convert([SENTENCE["zh-TW"], SENTENCE["zh-HK"]], "zh") == [SENTENCE["zh"]] * 2


@pytest.mark.parametrize("target", ["zh", "zh-TW", "zh-HK"])
def test_every_script_reaches_the_target_from_every_source(target):
    """Simplified (SenseVoice, Paraformer) or Traditional of either region (Whisper): the same text."""
    sources = [SENTENCE["zh"], SENTENCE["zh-TW"], SENTENCE["zh-HK"]]
    out = script.convert(sources, target)
    assert out == [SENTENCE[target]] * 3
    assert all(script.written_in(text, target) for text in out)


def test_simplified_text_is_never_degraded():
    """The Traditional-only configs (tw2s turns 显著 into 显着, hk2t 吃 into 喫) only see pieces
    the model wrote in Traditional."""
    simplified = "这本名著的著者很著名，臭名昭著，土著，编著，显著，什么，吃饭，只有一只，秘密，床上"
    assert script.convert([simplified], "zh") == [simplified]
    assert script.convert([simplified], "zh-TW") == ["這本名著的著者很著名，臭名昭著，土著，編著，顯著，什麼，吃飯，只有一隻，秘密，床上"]


def test_script_not_vocabulary():
    """s2tw / s2hk, not s2twp / s2hkp: the characters change, the speaker's words do not."""
    assert script.convert(["软件信息网络视频出租车鼠标"], "zh-TW") == ["軟件信息網絡視頻出租車鼠標"]
    assert script.convert(["软件信息网络视频出租车鼠标"], "zh-HK") == ["軟件信息網絡視頻出租車鼠標"]


def test_what_is_not_converted():
    pieces = ["日本語の漢字を變換しない", "hello world", "", "  ", "12345", "한국어", "😀"]
    assert script.convert(pieces, "zh") == pieces  # kana: a Japanese piece even in a Chinese recording
    assert script.to_script([WHISPER_TRADITIONAL], "ja", "zh") == [WHISPER_TRADITIONAL]
    assert script.to_script([WHISPER_TRADITIONAL], "en", "zh") == [WHISPER_TRADITIONAL]
    assert script.to_script([WHISPER_TRADITIONAL], "zh", "keep") == [WHISPER_TRADITIONAL]
    assert script.to_script([WHISPER_TRADITIONAL], "yue", "zh") == [SIMPLIFIED]
    assert script.to_script([WHISPER_TRADITIONAL], "auto", "zh") == [SIMPLIFIED]
    assert script.to_script([], "zh", "zh") == []


def test_characters_opencc_cannot_take_are_kept():
    """OpenCC stops at NUL and cannot encode lone surrogates: they are kept, the rest converted."""
    assert script.convert(["中國\x00人民", "中國\ud800人民", "中國\u241e人民", "“中國”\n人民 ABC"], "zh") == [
        "中国\x00人民", "中国\ud800人民", "中国\u241e人民", "“中国”\n人民 ABC"]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.text(alphabet=st.one_of(st.sampled_from(list(SENTENCE["zh-TW"] + "著么乾后")),
                                                 st.characters()), max_size=12), max_size=8),
       target=st.sampled_from(script.SCRIPTS + ("bogus",)))
def test_never_raises_one_output_per_input(texts, target):
    out = script.convert(texts, target)
    assert len(out) == len(texts)
    for before, after in zip(texts, out):
        if not script._HAN.search(before):
            assert after == before


def test_an_opencc_failure_leaves_the_text_as_it_was(monkeypatch, caplog):
    def broken(config):
        raise OSError("no dictionary")

    monkeypatch.setattr(script, "_converter", broken)
    monkeypatch.setattr(script, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=script.__name__):
        assert script.convert([WHISPER_TRADITIONAL], "zh") == [WHISPER_TRADITIONAL]
    assert "OpenCC unavailable" in caplog.text


def test_a_piece_opencc_rejects_keeps_its_text_and_the_others_are_converted(monkeypatch, caplog):
    real = script._converter

    class Picky:
        def __init__(self, inner):
            self.inner = inner

        def convert(self, text):
            if "炸" in text:
                raise RuntimeError("kaboom")
            return self.inner.convert(text)

    monkeypatch.setattr(script, "_converter", lambda config: Picky(real(config)))
    with caplog.at_level(logging.WARNING, logger=script.__name__):
        out = script.convert([WHISPER_TRADITIONAL, "炸彈來了", WHISPER_TRADITIONAL], "zh")
    assert out == [SIMPLIFIED, "炸彈來了", SIMPLIFIED]
    assert "kaboom" in caplog.text


def test_thousands_of_pieces_are_fast():
    pieces = [SENTENCE["zh-TW"][:20 + i % 20] for i in range(5000)]
    started = time.perf_counter()
    out = script.convert(pieces, "zh")
    elapsed = time.perf_counter() - started
    print(f"5000 pieces to Simplified: {elapsed:.2f} s")
    assert out[0] == SENTENCE["zh"][:20] and elapsed < 5.0


# --- assemble: once, before ITN, on every piece -------------------------------------------------

INFO = AudioInfo("/x/talk.wav", 60.0, 16000, 1, "pcm_s16le")


def results(*texts: str, language: str = "zh", itn_applied: bool = False) -> list[SegmentResult]:
    return [SegmentResult(Segment(i, 10.0 * i, 10.0 * i + 9), (TimedText(10.0 * i, 10.0 * i + 5, t),), 5.0, language,
                          itn_applied) for i, t in enumerate(texts)]


def test_assemble_converts_the_text_and_every_segment_then_itn():
    got, fallbacks = assemble(INFO, "m", results(WHISPER_TRADITIONAL, "我有三百二十五塊錢"), "zh", PipelineOptions())
    assert [s.text for s in got.segments] == [SIMPLIFIED, "我有三百二十五块钱"]
    assert [s.text_itn for s in got.segments] == [SIMPLIFIED, "我有325块钱"]
    assert got.text == SIMPLIFIED + "我有三百二十五块钱" and got.text_itn == SIMPLIFIED + "我有325块钱"
    assert fallbacks == 0 and script.written_in(got.text, "zh")


@pytest.mark.parametrize("target", ["zh-TW", "zh-HK"])
def test_traditional_targets_get_itn_through_simplified(target):
    """wetext's Chinese grammar stops at 萬, 兩, 點 (一萬兩千五百 → 一萬兩千500): ITN runs on the
    Simplified text and the pieces it changed are written back in the target script."""
    texts = ("一共一萬兩千五百個人", "增長了百分之三點五", "今天是二零二四年五月三號", SENTENCE["zh"])
    got, _ = assemble(INFO, "m", results(*texts), "zh", PipelineOptions(script=target))
    assert [s.text_itn for s in got.segments][:3] == ["一共12500個人", "增長了3.5%", "今天是2024/05/03"]
    assert got.segments[3].text == got.segments[3].text_itn == SENTENCE[target]  # no number: the same text
    assert all(script.written_in(s.text, target) and script.written_in(s.text_itn, target) for s in got.segments)


def test_assemble_leaves_japanese_english_and_keep_alone():
    japanese = "日本語の漢字を變換しない"
    for texts, language, options in [((japanese,), "ja", PipelineOptions()),
                                     ((WHISPER_TRADITIONAL,), "ja", PipelineOptions()),
                                     (("Hello there.",), "en", PipelineOptions()),
                                     ((WHISPER_TRADITIONAL,), "zh", PipelineOptions(script="keep", itn=False))]:
        got, _ = assemble(INFO, "m", results(*texts, language=language), language, options)
        assert [s.text for s in got.segments] == list(texts), (texts, language)


def test_assemble_detects_chinese_when_the_language_is_unknown_and_converts_model_itn():
    got, _ = assemble(INFO, "m", results(WHISPER_TRADITIONAL, language="", itn_applied=True), "auto",
                      PipelineOptions(script="zh-HK"))
    assert got.text == "中國人民決心繼承" and got.language == ""
    got, _ = assemble(INFO, "m", results("有12500個人", language="zh", itn_applied=True), "zh", PipelineOptions())
    assert got.text == "有12500个人" and got.text_itn == ""  # the model's own ITN: wetext skipped


# --- options, checkpoint, settings, CLI -----------------------------------------------------------

def test_script_does_not_invalidate_a_checkpoint():
    base = PipelineOptions()
    key = checkpoint.options_key(base)
    assert all(checkpoint.options_key(replace(base, script=s)) == key for s in script.SCRIPTS)
    assert checkpoint.options_key(replace(base, itn=False, script="keep")) == key
    assert checkpoint.options_key(replace(base, snap_seconds=0.1)) != key
    assert options_from_record({"script": "zh-TW", "itn": False}).script == "zh-TW"
    assert options_from_record({}).script == "zh"


class TraditionalEngine:
    """Answers every input in Traditional, as Whisper did for Mandarin from the mainland."""

    name, device, max_input_seconds = "trad", "cpu", 30.0

    def batch_limit(self, padded_seconds):
        return 2

    def transcribe_batch(self, audios, language="auto"):
        return [EngineOutput((LocalText(0.0, a.size / 16000, WHISPER_TRADITIONAL),), "zh") for a in audios]

    def release(self):
        pass

    def unload(self):
        pass


class MemoryStore:
    def __init__(self):
        self.head, self.windows = None, []

    def begin(self, head):
        self.head = head

    def add(self, window):
        self.windows.append(window)


def test_a_checkpoint_resumes_under_another_script_and_keeps_the_model_text():
    path = DATA / "two_cities.wav"
    options = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=10.0,
                              first_window_seconds=10.0)
    store = MemoryStore()
    events = list(checkpoint.persist(transcribe(path, options, engine=TraditionalEngine()), store, path, options,
                                     resuming=False))
    assert events[-1].transcript.text.startswith(SIMPLIFIED)
    assert all(p[2] == WHISPER_TRADITIONAL for w in store.windows for r in w["results"] for p in r["pieces"])
    taiwan = replace(options, script="zh-TW")
    resume = checkpoint.resume_from(path, taiwan, store.head, store.windows)
    assert resume is not None and len(resume.done) == len([e for e in events if isinstance(e, WindowDone)])
    again = [e for e in transcribe(path, taiwan, engine=TraditionalEngine(), resume=resume) if isinstance(e, Finished)]
    assert again[0].transcript.text.startswith("中國人民決心繼承")
    assert {s.text for s in again[0].transcript.segments} == {"中國人民決心繼承"}


def test_app_settings_script():
    assert AppSettings().script == "zh"
    assert AppSettings(script="zh-tw").script == "zh-TW"
    with pytest.raises(ValueError, match="script"):
        AppSettings(script="klingon")
    assert AppSettings.from_dict({"script": "klingon", "vad": "librosa"}).script == "zh"  # lenient file load
    assert AppSettings.from_dict({"script": "keep"}).to_dict()["script"] == "keep"
    settings_ = AppSettings(script="zh-HK")
    assert settings_.to_pipeline_options().script == "zh-HK"
    assert settings_.to_pipeline_options(script="zh-TW", itn=False).script == "zh-TW"
    with pytest.raises(ValueError):
        settings_.to_pipeline_options(script="bogus")


def test_cli_script_option():
    from webui.cli import build_parser, options_from_args

    parse = build_parser().parse_args
    assert options_from_args(parse(["transcribe", "a.wav"])).script == "zh"
    assert options_from_args(parse(["transcribe", "a.wav", "--script", "zh-tw"])).script == "zh-TW"
    assert options_from_args(parse(["transcribe", "a.wav", "--script", "keep"])).script == "keep"
    with pytest.raises(SystemExit):
        parse(["transcribe", "a.wav", "--script", "zh-Hant"])


def test_assemble_handles_each_language_of_a_recording_that_changes_language():
    """A recording that opened in English and went on in Mandarin (each input decoded in its own
    language, engines/language_id.py): the Mandarin pieces are put in Simplified and get Chinese
    ITN, the English ones English ITN, all in time order; the transcript's language is the one
    most of its lines are in. Before, both went through the recording's language: Mandarin kept Traditional and
    its numbers."""
    english = results("I paid twenty five dollars.", language="en")
    mandarin = [SegmentResult(Segment(1, 10.0, 19.0), (TimedText(10.0, 15.0, "我有三百二十五塊錢"),), 5.0, "zh")]
    # an input holding the end of the Mandarin and the start of French, decoded as French
    both = [SegmentResult(Segment(2, 20.0, 29.0), (TimedText(20.0, 22.0, "我有三百二十五塊錢"),
                                                   TimedText(23.0, 25.0, "Pour activer, appuyez sur 1.")), 5.0, "fr")]
    got, fallbacks = assemble(INFO, "m", english + mandarin + both, "en", PipelineOptions())
    assert [s.text for s in got.segments] == ["I paid twenty five dollars.", "我有三百二十五块钱", "我有三百二十五块钱",
                                              "Pour activer, appuyez sur 1."]
    assert [s.text_itn for s in got.segments] == ["I paid $25.", "我有325块钱", "我有325块钱",
                                                  "Pour activer, appuyez sur 1."]  # no French ITN
    # the recording's language is the one most of its lines' time is in: Mandarin, 7 s of 14
    assert got.language == "zh" and fallbacks == 0
    # each line names its language, in the JSON too, and read back; one language names none
    assert [s.language for s in got.segments] == ["en", "zh", "zh", "fr"]
    assert [s.get("language") for s in got.to_dict()["segments"]] == ["en", "zh", "zh", "fr"]
    assert Transcript.from_dict(json.loads(json.dumps(got.to_dict()))).segments == got.segments
    # the input where English meets Mandarin decoded as Mandarin: its English is English
    meeting = [SegmentResult(Segment(1, 10.0, 19.0), (TimedText(10.0, 12.0, "It cost twenty five dollars."),
                                                      TimedText(13.0, 15.0, "我有三百二十五塊錢")), 5.0, "zh")]
    got, _ = assemble(INFO, "m", english + meeting, "en", PipelineOptions())
    assert [(s.language, s.text_itn) for s in got.segments] == [
        ("en", "I paid $25."), ("en", "It cost $25."), ("zh", "我有325块钱")]
    assert got.language == "en"
    alone, _ = assemble(INFO, "m", results("I paid.", "Press one.", language="en"), "en", PipelineOptions())
    assert all(not s.language and "language" not in d for s, d in zip(alone.segments, alone.to_dict()["segments"]))
