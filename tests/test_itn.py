"""ITN with wetext: English and Chinese, boundaries kept, raw text kept where wetext fails."""

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webui.modules import itn


def one(text: str, language: str) -> str:
    result = itn.normalize_segments([text], language)
    assert result.fallbacks == 0
    return result.texts[0]


def test_english_examples():
    assert one("I have twenty three apples", "en") == "I have 23 apples"
    # A measure keeps the unit as it was said (wetext alone writes "10 m").
    assert one("go forward ten meters", "en") == "go forward 10 meters"
    assert one("about twenty five percent of the class", "en") == "about 25% of the class"
    assert one("on january fifth twenty twenty", "en") == "on january 5 2020"
    # wetext alone puts a space before the full stop after a normalised number ("2024 .") and
    # before a per cent sign ("25 %")
    assert one("The exam is on may third twenty twenty four.", "en") == (
        "The exam is on may 3 2024.")


def test_chinese_examples():
    assert one("一共一百二十三个人", "zh") == "一共123个人"
    assert one("我有三百五十块钱", "zh") == "我有350块钱"
    assert one("我有三百二十五块钱", "zh") == "我有325块钱"
    assert one("百分之二十五的人", "zh") == "25%的人"
    assert one("今天是二零二四年五月三日", "zh") == "今天是2024/05/03"


def test_quotes_survive_and_numbers_inside_them_are_normalised():
    # The bug: any `"` made wetext's English grammar raise and killed the whole run.
    assert one('He said "hello" to me.', "en") == 'He said "hello" to me.'
    assert one('"I paid twenty five dollars," she said.', "en") == '"I paid $25," she said.'
    assert one('It was "twenty five percent" at most.', "en") == 'It was "25%" at most.'
    assert one("She said, \u201cthat's one hundred and five dollars.\u201d", "en") == (
        "She said, \u201cthat's $105.\u201d")
    assert one('x""y and x" "y', "en") == 'x""y and x" "y'
    # The Chinese grammar did not raise but wrote `\"` for every quote.
    assert one('他说"我有三百二十五块钱"', "zh") == '他说"我有325块钱"'
    assert one("\u201c三百\u201d块", "zh") == "\u201c300\u201d块"


def test_segments_keep_their_boundaries_across_windows():
    texts = [f"segment {i} has twenty three words" for i in range(itn.WINDOW + 7)]
    result = itn.normalize_segments(texts, "en")
    assert len(result.texts) == len(texts) and result.fallbacks == 0
    assert result.texts[0] == "segment 0 has 23 words"
    assert result.texts[-1] == f"segment {len(texts) - 1} has 23 words"


def test_separator_in_the_text_cannot_shift_segments():
    result = itn.normalize_segments(["one \u241e two", "twenty three"], "en")
    assert result.texts == ["one \u241e two", "23"] and result.fallbacks == 0


def test_language_detection_for_auto_and_passthrough():
    assert itn.grammar_for("auto", "今天") == "zh"
    assert itn.grammar_for("", "hello") == "en"
    assert itn.grammar_for("de", "zwei") is None
    assert itn.normalize_segments(["zwei Äpfel"], "de") == itn.ItnResult(["zwei Äpfel"], 0)
    assert itn.normalize_segments(["我有三百二十五块钱", "一共一百二十三个人"], "auto").texts == [
        "我有325块钱", "一共123个人"]
    assert itn.normalize_segments([], "en") == itn.ItnResult([], 0)


# --- English: ordinal words in running text, measures, times (issue 20) ----------------------------

def same(text: str) -> bool:
    return one(text, "en") == text


def test_ordinal_words_in_running_text_stay_words():
    # What wetext alone wrote: "enter the 1st three letters of your party's 1st name", "now 1st
    # in line", "the 2nd item", "a 3rd of the budget", "1st , we review", "I 2nd that".
    assert same("enter the first three letters of your party's first name")
    assert same("you are now first in line")
    assert same("Your call is now first in line and will be answered by the next available representative.")
    assert same("the second item on the agenda")
    assert same("a third of the budget")
    assert same("one third of the budget")  # wetext: "one 3rd"
    assert same("first, we review the minutes")
    assert same("first of all, at first, for the first time, in the first place")
    assert same("our revenue grew in the second quarter, we rely on a third party")
    assert same("I second that motion")
    assert same("the office is on the fifth floor, our twentieth year, the hundredth customer")
    assert same("one hundredth of a second")  # wetext: "100th of a 2nd"
    assert same("this is the hundred and first time")
    assert same("you may first want to check")  # "may" is no month here
    assert same('She came "first" in line.')


def test_dates_and_compound_ordinals_are_still_figures():
    assert one("the meeting is on June first at three thirty pm", "en") == "the meeting is on June 1st at 3:30 p.m."
    assert one("on the first of July twenty twenty four", "en") == "on the 1st of July 2024"
    assert one("June the first", "en") == "June the 1st"
    assert one("we met on May second", "en") == "we met on May 2nd"
    assert one("on may third twenty twenty four", "en") == "on may 3 2024"
    assert one("in the twenty first century", "en") == "in the 21st century"
    assert one("on the twenty second of May", "en") == "on the 22nd of May"
    assert one("one hundred and first", "en") == "101st"


def test_measures_keep_the_unit_as_said():
    # wetext alone: "wait 1 s please", "30 s later", "10 m", "60 mph", '5 "', "1 2nd please"
    assert same("wait one second please")
    assert same("hold on a second")
    assert same("wait 1 second please")
    assert same("we need one hour for this")
    assert one("thirty seconds later", "en") == "30 seconds later"
    assert one("a twenty second pause", "en") == "a 20 second pause"
    assert one("let's take a ten minute break", "en") == "let's take a 10 minute break"
    assert one("he drove at sixty miles per hour.", "en") == "he drove at 60 miles per hour."
    assert one("five inches", "en") == "5 inches"
    assert one("the server has sixty four gigabytes of memory", "en") == "the server has 64 gigabytes of memory"


def test_amounts_times_phone_numbers_are_still_normalised():
    assert one("it costs twenty five dollars", "en") == "it costs $25"
    assert one("one hundred and twenty people", "en") == "120 people"
    assert one("the budget is two hundred and fifty thousand dollars.", "en") == "the budget is $250,000."
    assert one("call me at five five five one two one two", "en") == "call me at 555-1212"
    assert one("call five five five one two three four five six seven", "en") == "call 555-123-4567"
    assert one("revenue was up three point five percent.", "en") == "revenue was up 3.5%."
    assert one("let's meet at ten thirty tomorrow", "en") == "let's meet at 10:30 tomorrow"
    assert one("the call is at two pm", "en") == "the call is at 2 p.m."
    assert one("we'll start at three o'clock.", "en") == "we'll start at 3 o'clock."
    assert one("it happened in nineteen ninety nine", "en") == "it happened in 1999"
    assert one("we'll come back to that at three thirty p m.", "en") == "we'll come back to that at 3:30 p.m."
    assert one("Oil went from twenty dollars to a hundred and forty.", "en") == (
        "Oil went from $20 to a hundred and forty.")  # wetext: "a hundred and 40 ."
    assert same("the odds are fifty fifty")  # wetext: "5050"
    assert same("Twenty five dollars, she said.")  # wetext: "Twenty $5 ,"


def test_no_space_is_added_before_punctuation():
    assert one("twenty five dollars, she said.", "en") == "$25, she said."
    assert one("from nineteen sixty three.", "en") == "from 1963."
    assert one("five five five, one two one two", "en") == "555, 1212"
    assert one("we paid twenty five dollars .", "en") == "we paid $25 ."  # the raw spacing is kept


def _table():
    from pathlib import Path

    path = Path(__file__).resolve().parent / "data" / "itn_sentences.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "raw\texpected\tsource"
    return [tuple(line.split("\t")) for line in lines[1:] if line.strip()]


def test_the_sentence_table():
    """tests/data/itn_sentences.tsv: the bundled model's output on real recordings and meeting
    speech, with what a reader expects. scripts/bench/itn_table.py: 131/217 right before, 213
    after; the 4 misses are wetext readings left alone ("9909", "a hundred and fifty percent",
    "Q three") and a capitalised year kept as said."""
    rows = _table()
    assert all(len(r) == 3 and r[2] for r in rows)
    assert len(rows) >= 100 and sum(r[2].startswith("whisper-base") for r in rows) >= 50
    result = itn.normalize_segments([r[0] for r in rows], "en")
    assert result.fallbacks == 0
    wrong = [(raw, expected, got) for (raw, expected, _), got in zip(rows, result.texts) if got != expected]
    assert len(rows) - len(wrong) >= 213, wrong
    # Piece by piece (no neighbours in the same wetext call) the model's own lines come out the same.
    real = [r for r in rows if r[2].startswith("whisper-base")]
    assert [one(raw, "en") for raw, _, _ in real] == [expected for _, expected, _ in real]


# Pieces wetext has nothing to normalise in; several of them used to raise or get mangled.
EDGE_PIECES = [
    "", " ", "   \t ", "\n", "\u3000", "...", "!?", '"', '""', "'",
    "\\", "a \\ b", "path\\to\\file", "\u241e", " \u241e ", "\u241e\u241e", itn.PLACEHOLDER,
    "<", "a < b", "|", "a | b", ">", "{", "a {b} c",
    'tokens { name: "x" }', "\x00", "a\x00b", "a\x01b", "\x7f", "a\ud800b", "\udcff",
    "\u201chello\u201d", "\u2018hi\u2019", "\u201c", "\u2019",
    "12345678901234567890123456789", "9" * 200, "😀", "I love 🍕 pizza 👍🏽", "🇺🇸 ❤️",
    "我有 three 个 apple 和 25 个", "Привет", "مرحبا", "#$%^&*()", "~`", "a_b", "\u200b", "\ufeff",
]


@pytest.mark.parametrize("language", ["en", "zh", "auto"])
def test_edge_pieces_pass_through_untouched(language):
    for piece in EDGE_PIECES:
        assert itn.normalize_segments([piece], language) == itn.ItnResult([piece], 0), repr(piece)
    together = itn.normalize_segments(EDGE_PIECES + ["twenty three"], language)
    assert len(together.texts) == len(EDGE_PIECES) + 1 and together.fallbacks == 0
    for piece, out in zip(EDGE_PIECES, together.texts):
        for ch in '"\\\x00\u241e\u201c\u201d':
            assert out.count(ch) == piece.count(ch), (piece, out)


LECTURE = [
    "Okay, let's get started. Welcome back, everyone.",
    "Last week we looked at chapter three, on supply and demand.",
    "Today I want to talk about inflation, which, as you know, is about twenty five percent",
    "higher than it was in twenty nineteen in some of these countries.",
    'My professor used to say, "Inflation is always and everywhere a monetary phenomenon."',
    "That's a quote from Milton Friedman, from nineteen sixty three.",
    '"But is it true?" That\'s the question for today.',
    "Let's look at the numbers. In two thousand and eight, the Fed",
    "cut rates to almost zero, and kept them there for seven years.",
    "If you bought a house for three hundred thousand dollars back then,",
    'it might be "worth" six hundred thousand today. Is that inflation?',
    "Someone in the back: \u201cIsn't that just the housing market?\u201d",
    "Good question. Hold on to it, we'll come back to that at three thirty p m.",
    "So, one, two, three: three reasons why prices rise.",
    'First, "demand pull." Too much money chasing too few goods.',
    'Second, "cost push." Oil went from twenty dollars to a hundred and forty.',
    "Third, expectations. If you expect prices to rise by ten percent,",
    "you ask for a ten percent raise, and, well, there you go.",
    "Page forty two in your textbook has the chart. Figure four point two.",
    'The y axis is labelled "CPI, all items", the x axis is the year.',
    "Um, sorry, the projector's acting up again... can you see that?",
    '"Yes!" Okay, great.',
    "So from nineteen seventy to nineteen eighty, prices more than doubled.",
    "The average annual rate was about seven point four percent.",
    "Compare that with the two thousands, about two and a half percent.",
    "Homework: read sections five point one through five point three,",
    'and answer question "twelve b" on page one hundred and three.',
    "It's due on march fifth. No extensions, I mean it.",
    "Any questions? Yes, you, in the red shirt.",
    '"Will this be on the exam?" Everything is on the exam.',
]


@pytest.mark.parametrize("language", ["en", "auto"])
def test_a_real_lecture_normalises_without_losing_quotes(language):
    texts = LECTURE * 2  # 60 pieces: more than one window
    result = itn.normalize_segments(texts, language)
    assert result.fallbacks == 0 and len(result.texts) == len(texts)
    for piece, out in zip(texts, result.texts):
        for ch in '"\u201c\u201d':
            assert out.count(ch) == piece.count(ch), (piece, out)
    assert result.texts[4] == (
        'My professor used to say, "Inflation is always and everywhere a monetary phenomenon."')
    assert result.texts[5] == "That's a quote from Milton Friedman, from 1963."
    assert result.texts[9] == "If you bought a house for $300,000 back then,"
    assert result.texts[15].startswith('Second, "cost push." Oil went from $20')
    assert result.texts[30:] == result.texts[:30]


class _Rejecting:
    """A normaliser that raises like wetext's token parser on pieces holding a marker."""

    def __init__(self, real):
        self.real = real

    def normalize(self, text):
        if "kaboom" in text:
            raise AssertionError
        return self.real.normalize(text)


def test_a_rejected_piece_keeps_its_raw_text_and_is_counted(monkeypatch, caplog):
    real = itn._normalizer("en")
    monkeypatch.setattr(itn, "_normalizer", lambda lang: _Rejecting(real))
    texts = ["I have twenty three apples", "kaboom twenty three", "about twenty five percent"]
    with caplog.at_level(logging.WARNING, logger=itn.__name__):
        result = itn.normalize_segments(texts, "en")
    assert result == itn.ItnResult(["I have 23 apples", "kaboom twenty three", "about 25%"], 1)
    assert len(caplog.records) == 1 and "kaboom" in caplog.records[0].getMessage()


def test_a_merged_boundary_falls_back_to_piece_by_piece(monkeypatch):
    real = itn._normalizer("en")

    class Merging:
        def normalize(self, text):
            return real.normalize(text.replace(itn.SEPARATOR, ""))

    monkeypatch.setattr(itn, "_normalizer", lambda lang: Merging())
    result = itn.normalize_segments(["twenty three", "twenty five"], "en")
    assert result == itn.ItnResult(["23", "25"], 0)


# Hypothesis: thousands of transcript-like lists; wetext must never take the run down.
_WORDS = ("he said hello to me I paid twenty five dollars percent one two three hundred thousand "
          "and first second january fifth point p m mr dr chapter").split()
_PUNCT = list('.,!?;:"\'()[]{}<>|\\/-_#$%&*@^~`') + [
    "\u201c", "\u201d", "\u2018", "\u2019", "\u2026", "\u2014", "\u241e", itn.PLACEHOLDER,
    "\x00", "\x01", "\x7f", "\ud800", "\u200b", "\ufeff"]
_TOKEN = st.one_of(
    st.sampled_from(_WORDS),
    st.integers(min_value=0, max_value=10**25).map(str),
    st.sampled_from(_PUNCT),
    st.text(alphabet="我有三百二十五块钱一共个人零点年月日今天你好", min_size=1, max_size=6),
    st.sampled_from([" ", "  ", "\t", "\n", "\xa0", "\u3000"]),
    st.sampled_from(["😀", "🍕", "👍🏽", "🇺🇸", "❤️"]),
    st.text(max_size=4),
)
_PIECE = st.lists(st.tuples(_TOKEN, st.sampled_from(["", " "])), max_size=10).map(
    lambda parts: "".join(t + s for t, s in parts))


@settings(max_examples=2000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts=st.lists(_PIECE, max_size=60), language=st.sampled_from(["en", "zh", "auto"]))
def test_never_raises_and_keeps_one_output_per_input(texts, language):
    result = itn.normalize_segments(texts, language)
    assert len(result.texts) == len(texts)
    assert 0 <= result.fallbacks <= len(texts)
    for piece, out in zip(texts, result.texts):
        if not piece.strip():
            assert out == piece
        for ch in '"\\\u241e':
            assert out.count(ch) >= piece.count(ch), (piece, out)


# --- Chinese on real model output (issue 10) ------------------------------------------------------
# What the bundled Whisper base wrote for the real Mandarin clips (tests/data/real_zh and
# shared/testdata/real_zh), put in Simplified by script.py, as ITN gets it. Nothing in them is a
# number to normalise: the model wrote "一二线" as 12线 itself, and 一下 / 一首 / 一定 / 一夜 must stay.
REAL_WHISPER_ZH = [
    "甚至出现交易几乎停制的情况",
    "12线尝试虽然也处于调整中",
    "1-2线尝试虽然也处于调整中",  # another run of the same clip (Whisper's temperature fallback samples)
    "广州市佛地产中进协会分析",
    "换一首歌",
    "我有的时候说不清楚你们知道吗",
    "首先说一下刚才这个经历说完了这个销售文现在说一下咱们能上卡问题首先咱们上场上半年这个先歌舞会报一下就是夜级",
    "扎自己的脚",
    "欢迎大家来体验打模院推出的语音识别模型",
    "但是现在不同了英国脱欧盟内部完善的产业链的红利人",
    "他一定在家因为灯亮着有种推理或者解释的感觉",
    # from the 20-minute recording (packed inputs): ASCII commas, 一夜
    "首先,我们上场上门年先个物门会报一下,就是业绩",
    "首先,说一下,刚才这个经历说完了,这个销售文,现在说一下,咱们能上卡问题首先,咱们上场,上半年,这个先歌舞会报一下,就是夜级",
    "好首先说一下刚才这个经历说完了这个小朋友们首先咱们能上卡问题首先咱们上场上门一夜这个先歌舞会报一下就是夜积",
]


def test_chinese_real_model_output_is_left_as_it_is():
    result = itn.normalize_segments(REAL_WHISPER_ZH, "zh")
    assert result == itn.ItnResult(REAL_WHISPER_ZH, 0)
    merged = itn.normalize_segments(["".join(REAL_WHISPER_ZH)], "zh")  # the merged text, as one piece
    assert merged == itn.ItnResult(["".join(REAL_WHISPER_ZH)], 0)


# Number-bearing sentences (synthesised as text: no Mandarin TTS here) and what wetext 0.1.8's
# Chinese grammar makes of them.
CHINESE_NUMBERS = {
    # numbers
    "一共有一千零一个人": "一共有1001个人",
    "第二十一届": "第21届",
    "零点五": "0.5",
    "全国有十四亿人口": "全国有14亿人口",
    "这个项目投资了一点二亿元": "这个项目投资了1.2亿元",
    "他考了九十八分": "他考了98分",
    "一二线城市虽然也处于调整中": "1~2线城市虽然也处于调整中",  # the clip's reference wording
    # dates and times
    "二零二三年十月一日": "2023/10/01",
    "一九九七年七月一日香港回归": "1997/07/01香港回归",
    "会议定在二零二四年三月十五号下午两点": "会议定在2024/03/15下午两点",
    "二零零八年北京奥运会": "2008年北京奥运会",
    "早上八点半开会": "8:30a.m.开会",
    # money
    "今年的营收是三千五百万元": "今年的营收是3500万元",
    "这件衣服三百九十九块": "这件衣服399块",
    "三块五一斤": "3块5一斤",
    "五毛钱": "五毛钱",
    # percentages
    "增长了百分之十二点五": "增长了12.5%",
    "百分之九十五的人同意": "95%的人同意",
    "失业率下降了百分之零点三": "失业率下降了0.3%",
    # phone numbers (幺 for one, as people read digits)
    "我的手机号是一三九零零一三八零零零": "我的手机号是13900138000",
    "请拨打幺幺零": "请拨打110",
    "电话号码是零一零八八八八六六六六": "电话号码是01088886666",
    # measures
    "温度三十七点五度": "温度37.5°",
    "体重六十五公斤": "体重65kg",
    "身高一米八": "身高一米八",
}

# Where wetext's output is debatable or wrong; pinned so that a wetext upgrade shows up here.
CHINESE_WETEXT_QUIRKS = {
    "三三两两": "3322",                                # an idiom ("in twos and threes") read as digits
    "一共花了人民币两千三百元": "一共花了人民币¥2300",     # 人民币 kept and ¥ added
    "下午三点十五分": "3:15p.m.",                      # English a.m./p.m. in Chinese text
    "十月一号我们放假": "10/01我们放假",                 # a date without a year
}


def test_chinese_numbers_dates_money_percentages_phones():
    texts = list(CHINESE_NUMBERS)
    result = itn.normalize_segments(texts, "zh")
    assert result.fallbacks == 0
    assert dict(zip(texts, result.texts)) == CHINESE_NUMBERS
    # The same sentences merged into one text give the same result piece by piece.
    merged = itn.normalize_segments(["，".join(texts)], "zh").texts[0]
    assert merged == "，".join(CHINESE_NUMBERS.values())


def test_chinese_wetext_quirks_are_pinned():
    texts = list(CHINESE_WETEXT_QUIRKS)
    assert itn.normalize_segments(texts, "zh") == itn.ItnResult(list(CHINESE_WETEXT_QUIRKS.values()), 0)


def test_chinese_grammar_reads_simplified_only():
    """萬, 兩, 點, 號 stop the grammar: why merge.assemble runs ITN on Simplified text and
    writes the changed pieces back in Traditional (tests/test_script.py)."""
    traditional = ["一共一萬兩千五百個人", "兩千零二十三年", "下午三點十五分開會"]
    assert itn.normalize_segments(traditional, "zh").texts == ["一共一萬兩千500個人", "兩千零23年", "下午三點15分開會"]
    assert itn.normalize_segments(["一共一万两千五百个人", "两千零二十三年"], "zh").texts == ["一共12500个人", "2023年"]


def _real_zh_folders():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    return root / "tests" / "data" / "real_zh", root.parent / "shared" / "testdata" / "real_zh"


# Words whose number characters are not numbers: ITN must keep them wherever the model wrote them.
_NOT_NUMBERS = ("一下", "一首", "一定", "一些", "一直", "一起", "一夜", "一种", "一点点", "万一", "第一")


def _transcribe_real_zh(folder, names, engine):
    import json

    from webui.modules.events import Finished
    from webui.modules.options import PipelineOptions
    from webui.modules.pipeline import transcribe

    entries = [json.loads(line) for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    out = []
    for entry in entries:
        if names is None or entry["audio"] in names:
            events = transcribe(folder / entry["audio"], PipelineOptions(), engine=engine)
            out.append((entry, next(e for e in events if isinstance(e, Finished))))
    return out


def _check_real_itn(finished):
    from webui.modules import script

    import re

    assert finished, "no clips"
    for entry, done in finished:
        t = done.transcript
        assert done.stats.itn_fallbacks == 0, t.file
        if not re.search("[A-Za-z]", entry["text"]):  # a code-switched clip may be detected as English
            assert t.language == "zh", t.file
        assert script.written_in(t.text, "zh") and script.written_in(t.text_itn, "zh"), t.text
        for seg in t.segments:
            for word in _NOT_NUMBERS:
                assert seg.text_itn.count(word) == seg.text.count(word), (seg.text, seg.text_itn)
        print(f"{t.file[:40]}: {t.text} -> {t.text_itn}")


def test_chinese_itn_on_the_bundled_models_output(whisper_engine):
    """The bundled Whisper on tests/data/real_zh, end to end (Simplified, then ITN)."""
    local, _ = _real_zh_folders()
    if not (local / "manifest.jsonl").is_file():
        pytest.skip(f"{local} is missing")
    _check_real_itn(_transcribe_real_zh(local, None, whisper_engine))


def test_chinese_itn_on_the_shared_mandarin_clips(whisper_engine):
    """The shared clips not copied into tests/data (CI has ../shared beside the clone)."""
    local, shared = _real_zh_folders()
    if not (shared / "manifest.jsonl").is_file():
        pytest.skip(f"shared Mandarin clips not found at {shared} (../shared beside the clone)")
    copied = {p.name for p in local.glob("*")}
    extra = {p.name for p in shared.glob("*") if p.name not in copied and p.suffix in (".wav", ".flac")}
    _check_real_itn(_transcribe_real_zh(shared, extra, whisper_engine))
