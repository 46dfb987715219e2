"""A ≥ 20-minute Mandarin recording built from the real Mandarin clips and silences (issue 10):
the whole recording's CER against the same clips transcribed one by one, and every character of
the output in the chosen script (Simplified; the same transcript assembled again for Taiwan).

The bundled Whisper base is weak on Mandarin (CER ~18-27 % on the clips alone) and writes
Traditional for some inputs and Simplified for others within one recording: the test compares
the long run with the clips alone, not with a fixed bound.

One decode of a clip is one draw: Whisper base's Mandarin output changes when the same clip
starts a few milliseconds later (over 0/5/10/15 ms of lead-in silence, the CER of the 6 clips in
tests/data alone went 17 %, 26 %, 19 %, 23 %). So "the same clips transcribed one by one" is
taken literally: each placed clip is cut out of the recording itself (its own noise and timing,
from 0.3 s before its audio to 1 s after its speech) and transcribed alone. The difference
then measures what long-form processing (segments, windows, VAD over a whole segment) costs,
not the luck of where a clip happens to start.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path

import jiwer
import numpy as np
import pytest

from tests.recordings import build
from webui.modules import script
from webui.modules.engines.base import EngineSettings
from webui.modules.events import Finished, Planned, SegmentDone
from webui.modules.options import PipelineOptions
from webui.modules.merge import assemble
from webui.modules.pipeline import transcribe

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = (ROOT / "tests" / "data" / "real_zh", ROOT.parent / "shared" / "testdata" / "real_zh")
MINUTES = 20
OPTIONS = PipelineOptions(engine=EngineSettings(language="zh"))  # as in the issue: --language zh
pytestmark = pytest.mark.slow


def mandarin_clips() -> list[dict]:
    """The real Mandarin clips with their references: tests/data/real_zh, plus the shared ones
    where ../shared is beside the clone. Clips whose reference holds Latin letters (an English +
    Mandarin code-switch) are left out: the model drops or loops on the English, which is not
    what this test measures."""
    entries: dict[str, dict] = {}
    for folder in FOLDERS:
        manifest = folder / "manifest.jsonl"
        if not manifest.is_file():
            continue
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                if not re.search("[A-Za-z]", entry["text"]):
                    entries.setdefault(entry["audio"], dict(entry, path=folder / entry["audio"]))
    return list(entries.values())


def chars(text: str) -> str:
    """What CER counts: letters and digits, no punctuation or spaces."""
    return re.sub(r"[^\w]", "", text)


@pytest.fixture(scope="module")
def clips() -> list[dict]:
    found = mandarin_clips()
    if not found:
        pytest.skip(f"no Mandarin clips in {' or '.join(map(str, FOLDERS))}")
    return found


@pytest.fixture(scope="module")
def long_run(clips, whisper_engine, tmp_path_factory):
    from webui.modules.audio import decode

    path = tmp_path_factory.mktemp("long_zh") / "会议 mandarin 20min.flac"
    audio: list[tuple[np.ndarray, str]] = [(decode(c["path"]), c["text"]) for c in clips]
    # Longer pauses than the English recording: a meeting's pace, and a test that fits ~3 min.
    placed = build(path, MINUTES, seed=3, gap=(10.0, 20.0), clips=audio)
    started = time.perf_counter()
    planned, results, finished = None, [], None
    for event in transcribe(path, OPTIONS, engine=whisper_engine):
        if isinstance(event, Planned):
            planned = event
        elif isinstance(event, SegmentDone):
            results.append(event.result)
        elif isinstance(event, Finished):
            finished = event
    print(f"{len(placed)} clips in {MINUTES} min transcribed in {time.perf_counter() - started:.0f} s")
    return {"path": path, "placed": placed, "info": planned.info, "results": results, "finished": finished,
            "engine": whisper_engine.name}


@pytest.fixture(scope="module")
def alone(long_run, whisper_engine, tmp_path_factory) -> list[str]:
    """Each placed clip cut out of the recording and transcribed on its own, with the same
    options: one hypothesis per placement, in order."""
    import soundfile as sf

    from webui.modules.audio import decode

    folder = tmp_path_factory.mktemp("alone_zh")
    audio = decode(long_run["path"])
    texts = []
    for n, p in enumerate(long_run["placed"]):
        lo, hi = int((p.offset - 0.3) * 16000), int((p.end + 1.0) * 16000)
        path = folder / f"{n}.wav"
        sf.write(str(path), audio[max(0, lo):hi], 16000, subtype="PCM_16")
        finished = [e for e in transcribe(path, OPTIONS, engine=whisper_engine) if isinstance(e, Finished)]
        texts.append(finished[0].transcript.text)
    return texts


def test_the_recording_is_long_and_mandarin(long_run):
    transcript = long_run["finished"].transcript
    assert long_run["info"].duration >= MINUTES * 60 - 0.1
    assert transcript.language == "zh" and transcript.segments
    raw = [p.text for r in long_run["results"] for p in r.pieces]
    traditional = sum(not script.written_in(t, "zh") for t in raw)
    print(f"pieces the model wrote with Traditional characters: {traditional} of {len(raw)}")
    # The issue: against the Simplified reference, the text as the model wrote it scores worse.
    reference = chars("".join(p.text for p in long_run["placed"]))
    kept, _ = assemble(long_run["info"], long_run["engine"], long_run["results"], "zh",
                       replace(OPTIONS, script="keep"))
    cer_kept, cer_zh = jiwer.cer(reference, chars(kept.text)), jiwer.cer(reference, chars(transcript.text))
    print(f"CER of the recording: as the model wrote it {cer_kept:.1%}, Simplified {cer_zh:.1%}")
    assert cer_zh <= cer_kept


def test_cer_of_the_recording_is_within_two_points_of_the_clips_alone(long_run, alone):
    placed = long_run["placed"]
    reference = chars("".join(p.text for p in placed))
    long_cer = jiwer.cer(reference, chars(long_run["finished"].transcript.text))
    alone_cer = jiwer.cer(reference, chars("".join(alone)))
    print(f"CER over {len(placed)} clips: whole recording {long_cer:.1%}, the same clips alone {alone_cer:.1%}")
    assert long_cer <= alone_cer + 0.02, "\n".join(per_clip(long_run, alone))


def per_clip(long_run, alone: list[str]) -> list[str]:
    """For a failure: each placed clip's text in the long run (the lines that start or end inside
    its audio) beside its clip-alone text, worst first."""
    lines = long_run["finished"].transcript.segments
    rows = []
    for p, alone_text in zip(long_run["placed"], alone):
        lo, hi = p.offset - 0.5, p.end + 1.0
        heard = chars("".join(s.text for s in lines if lo <= s.start <= hi or lo <= s.end <= hi))
        ref, alone_text = chars(p.text), chars(alone_text)
        extra = round((jiwer.cer(ref, heard) - jiwer.cer(ref, alone_text)) * len(ref))
        rows.append((extra, f"{p.start:7.1f} s  {extra:+d} errors  long: {heard}  alone: {alone_text}"))
    return [row for _, row in sorted(rows, key=lambda r: -r[0])[:12]]


def test_the_output_is_all_simplified(long_run):
    transcript = long_run["finished"].transcript
    assert long_run["finished"].stats.itn_fallbacks == 0
    texts = [transcript.text, transcript.text_itn] + [t for s in transcript.segments for t in (s.text, s.text_itn)]
    mixed = [t for t in texts if not script.written_in(t, "zh")]
    assert not mixed, f"Traditional characters left in Simplified output: {mixed[:3]}"
    assert chars("".join(s.text for s in transcript.segments)) == chars(transcript.text)  # subtitles = full text


def test_the_same_transcript_in_taiwan_script(long_run):
    """Assembled again from the same model output (no second model run): all Taiwan Traditional,
    subtitles agreeing with the full text, and the same CER against the reference in that script."""
    simplified = long_run["finished"].transcript
    taiwan, fallbacks = assemble(long_run["info"], long_run["engine"], long_run["results"], "zh",
                                 replace(OPTIONS, script="zh-TW"))
    assert fallbacks == 0 and len(taiwan.segments) == len(simplified.segments)
    texts = [taiwan.text, taiwan.text_itn] + [t for s in taiwan.segments for t in (s.text, s.text_itn)]
    mixed = [t for t in texts if not script.written_in(t, "zh-TW")]
    assert not mixed, f"Simplified characters left in Taiwan output: {mixed[:3]}"
    assert chars("".join(s.text for s in taiwan.segments)) == chars(taiwan.text)
    assert [(s.start, s.end) for s in taiwan.segments] == [(s.start, s.end) for s in simplified.segments]
    # Back to Simplified gives the Simplified transcript (a one-to-many slip at most here and there).
    back = script.convert([taiwan.text], "zh")[0]
    assert jiwer.cer(simplified.text, back) < 0.01
    reference = "".join(p.text for p in long_run["placed"])
    cer_zh = jiwer.cer(chars(reference), chars(simplified.text))
    cer_tw = jiwer.cer(chars(script.convert([reference], "zh-TW")[0]), chars(taiwan.text))
    print(f"CER of the recording: Simplified {cer_zh:.1%}, Taiwan {cer_tw:.1%}")
    assert abs(cer_tw - cer_zh) <= 0.01
