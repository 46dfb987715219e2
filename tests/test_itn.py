"""ITN with wetext: English and Chinese, once over the merged text, segment boundaries kept."""

from webui.modules import itn


def test_english_examples():
    assert itn.normalize_text("I have twenty three apples", "en") == "I have 23 apples"
    assert itn.normalize_text("go forward ten meters", "en") == "go forward 10 m"


def test_chinese_examples():
    assert itn.normalize_text("一共一百二十三个人", "zh") == "一共123个人"
    assert itn.normalize_text("我有三百五十块钱", "zh") == "我有350块钱"


def test_segments_keep_their_boundaries_across_windows():
    texts = [f"segment {i} has twenty three words" for i in range(itn.WINDOW + 7)]
    out = itn.normalize_segments(texts, "en")
    assert len(out) == len(texts)
    assert out[0] == "segment 0 has 23 words"
    assert out[-1] == f"segment {len(texts) - 1} has 23 words"


def test_separator_in_the_text_cannot_shift_segments():
    out = itn.normalize_segments(["one \u241e two", "twenty three"], "en")
    assert out == ["one two", "23"]


def test_language_detection_for_auto_and_passthrough():
    assert itn.grammar_for("auto", "今天") == "zh"
    assert itn.grammar_for("", "hello") == "en"
    assert itn.grammar_for("de", "zwei") is None
    assert itn.normalize_segments(["zwei Äpfel"], "de") == ["zwei Äpfel"]
