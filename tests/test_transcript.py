"""Writers: exact SRT/VTT timestamp format, TXT and JSON fields."""

import json

import pytest

from webui.modules.transcript import TimedText, Transcript, format_timestamp, join_texts, render, tidy_spaces


@pytest.fixture
def transcript():
    return Transcript(
        file="talk.mp3", duration=3725.5, model="whisper-base", language="en",
        text="Hello there. Twenty three apples.", text_itn="Hello there. 23 apples.",
        segments=[TimedText(0.0, 1.5, "Hello there."), TimedText(3723.04, 3725.5, "Twenty three apples.", "23 apples.")],
    )


@pytest.mark.parametrize("seconds, srt, vtt", [
    (0, "00:00:00,000", "00:00:00.000"),
    (1.0005, "00:00:01,000", "00:00:01.000"),
    (61.25, "00:01:01,250", "00:01:01.250"),
    (3723.04, "01:02:03,040", "01:02:03.040"),
    (36000 + 59.999, "10:00:59,999", "10:00:59.999"),
    (-1, "00:00:00,000", "00:00:00.000"),
])
def test_timestamp_formats(seconds, srt, vtt):
    assert format_timestamp(seconds) == srt
    assert format_timestamp(seconds, ".") == vtt


def test_srt(transcript):
    assert render(transcript, "srt") == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n01:02:03,040 --> 01:02:05,500\n23 apples.\n"
    )


def test_vtt(transcript):
    out = render(transcript, "vtt")
    assert out.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n")
    assert "01:02:03.040 --> 01:02:05.500\n23 apples." in out


def test_txt(transcript):
    assert render(transcript, "txt").splitlines() == [
        "[00:00:00.000 --> 00:00:01.500] Hello there.",
        "[01:02:03.040 --> 01:02:05.500] 23 apples.",
    ]


def test_json_round_trip(transcript):
    data = json.loads(render(transcript, "json"))
    assert set(data) == {"file", "duration", "model", "language", "text", "text_itn", "segments"}
    assert data["segments"][1] == {"start": 3723.04, "end": 3725.5, "text": "Twenty three apples.", "text_itn": "23 apples."}
    assert Transcript.from_dict(data) == transcript


def test_unknown_format(transcript):
    with pytest.raises(ValueError, match="unknown format"):
        render(transcript, "docx")


def test_join_texts_spaces_latin_not_cjk():
    assert join_texts(["Hello", " world ", ""]) == "Hello world"
    assert join_texts(["今天", "天气很好"]) == "今天天气很好"
    assert join_texts(["我们用", "GPU", "训练"]) == "我们用 GPU 训练"


def test_tidy_spaces_only_between_cjk():
    assert tidy_spaces("廣州市 佛地產  中間協會分析") == "廣州市佛地產中間協會分析"
    assert tidy_spaces("我们用 GPU 训练，  好吗？ 好") == "我们用 GPU 训练，好吗？好"
    assert tidy_spaces("  keep  latin   words ") == "keep latin words"


def test_cue_text_cannot_break_the_subtitle_formats():
    evil = Transcript(file="x", duration=3.0, model="m", segments=[
        TimedText(0.0, 1.0, "Tom & Jerry <b>bold</b> --> 00:00:09.000"),
        TimedText(1.0, 2.0, "two\n\nlines"),
    ])
    vtt = render(evil, "vtt")
    assert "Tom &amp; Jerry &lt;b&gt;bold&lt;/b&gt; --&gt; 00:00:09.000" in vtt
    assert vtt.count("-->") == 2  # only the two timing lines
    cues = [block for block in vtt.split("\n\n")[1:] if block.strip()]
    assert len(cues) == 2 and "two lines" in cues[1]
    srt = render(evil, "srt")
    assert len([b for b in srt.split("\n\n") if b.strip()]) == 2 and "two lines" in srt
