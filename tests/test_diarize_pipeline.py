"""Diarization inside the pipeline: labels on every line and word, RTTM of the turns, embeddings
checkpointed with each window (a resumed run labels the same), and a failure that leaves the
transcript whole, without labels, with a warning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import DATA
from tests.test_api import ROOT
from webui.modules import checkpoint, pipeline, speakers
from webui.modules.diarize.base import DiarizeOptions
from webui.modules.events import Finished, Planned, Resume, WindowDone
from webui.modules.options import PipelineOptions
from webui.modules.engines.base import EngineSettings

FEMALE = ["librivox_sense_and_sensibility_01_austen_64kb-0870.wav", "librivox_sense_and_sensibility_01_austen_64kb-0880.wav",
          "librivox_sense_and_sensibility_01_austen_64kb-0890.wav"]
MALE = ["1089-134686-0000.flac", "1089-134686-0001.flac", "1089-134691-0000.flac"]


def _decode(path: Path) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-ac", "1", "-ar", "16000", "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, np.float32)


@pytest.fixture(scope="module")
def conversation(tmp_path_factory) -> tuple[Path, list[tuple[float, float, str]]]:
    """Two real readers taking turns (3-10 s each, 0.5 s apart), with the reference turns."""
    parts, turns, at = [], [], 0.0
    for her, his in zip(FEMALE, MALE):
        for name, who in ((her, "F"), (his, "M")):
            clip = _decode(DATA / name)
            turns.append((at, at + clip.size / 16000, who))
            parts += [clip, np.zeros(8000, np.float32)]
            at += clip.size / 16000 + 0.5
    path = tmp_path_factory.mktemp("conv") / "two readers.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path, turns


def _who(turns, t: float) -> str | None:
    return next((who for a, b, who in turns if a - 0.3 <= t <= b + 0.3), None)


def test_the_cli_labels_every_line_and_word_and_writes_rttm(conversation, tmp_path: Path) -> None:
    path, reference = conversation
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "webui.cli", "transcribe", str(path), "--diarize", "--format", "all",
                           "--language", "en", "--out", str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "two readers.json").read_text())
    labels = {s["speaker"] for s in data["segments"]}
    assert len(labels) == 2, labels
    # each found speaker is one reference voice, and every line is the voice that read it
    mapping = {}
    for s in data["segments"]:
        truth = _who(reference, (s["start"] + s["end"]) / 2)
        assert mapping.setdefault(s["speaker"], truth) == truth, (s, mapping)
        assert all(w["speaker"] == s["speaker"] for w in s["words"])
    assert len(set(mapping.values())) == 2
    txt = (out / "two readers.txt").read_text().splitlines()
    assert all(": " in line.split("] ", 1)[1] and line.split("] ", 1)[1].startswith("Speaker ") for line in txt)
    assert "<v Speaker 1>" in (out / "two readers.vtt").read_text()
    rttm = (out / "two readers.rttm").read_text().splitlines()
    assert len(rttm) >= 6 and all(r.startswith("SPEAKER two_readers 1 ") for r in rttm)
    assert [t["speaker"] for t in data["speakers"]][:2] == ["Speaker 1", "Speaker 2"]


def test_rttm_needs_diarize_and_bad_counts_are_one_line(conversation) -> None:
    path, _ = conversation
    for extra, message in ((["--format", "rttm"], "add --diarize"),
                           (["--min-speakers", "3", "--max-speakers", "2"], "above max_speakers"),
                           (["--speakers", "0"], "at least 1")):
        proc = subprocess.run([sys.executable, "-m", "webui.cli", "transcribe", str(path), *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _run(path: Path, **kwargs) -> list:
    options = PipelineOptions(engine=EngineSettings(device="cpu", language="en"), diarize=DiarizeOptions(),
                              window_seconds=15.0, first_window_seconds=15.0)
    return list(pipeline.transcribe(path, options, **kwargs))


def test_embeddings_travel_with_each_window_and_a_resume_labels_the_same(conversation, whisper_engine_fixture) -> None:
    path, _ = conversation
    events = _run(path, engine=whisper_engine_fixture)
    windows = [e for e in events if isinstance(e, WindowDone)]
    assert len(windows) >= 2 and all(w.speakers and w.speakers["vectors"] for w in windows)
    stored = [checkpoint._window_from_dict(json.loads(json.dumps(checkpoint.window_to_dict(w)))) for w in windows]
    assert [s.speakers for s in stored] == [w.speakers for w in windows]
    first = next(e for e in events if isinstance(e, Finished)).transcript
    resume = Resume(next(e for e in events if isinstance(e, Planned)), tuple(stored[:1]))
    again = next(e for e in _run(path, engine=whisper_engine_fixture, resume=resume) if isinstance(e, Finished))
    assert [(s.start, s.speaker) for s in again.transcript.segments] == [(s.start, s.speaker) for s in first.segments]
    assert again.transcript.turns == first.turns


def test_a_diarization_failure_keeps_the_whole_transcript_with_a_warning(conversation, whisper_engine_fixture,
                                                                          monkeypatch) -> None:
    path, _ = conversation

    def broken(*args, **kwargs):
        raise RuntimeError("no weights here")

    monkeypatch.setattr(pipeline, "window_speakers", broken)
    finished = next(e for e in _run(path, engine=whisper_engine_fixture) if isinstance(e, Finished))
    assert finished.transcript.segments and all(s.speaker is None for s in finished.transcript.segments)
    assert "Speaker labels are missing" in finished.stats.diarize_warning
    assert finished.transcript.text.lower().count("dashwood") == 1


def test_one_voice_is_one_speaker(whisper_engine_fixture, tmp_path: Path) -> None:
    path = tmp_path / "one.wav"
    sf.write(path, np.concatenate([_decode(DATA / n) for n in FEMALE]), 16000)
    finished = next(e for e in _run(path, engine=whisper_engine_fixture) if isinstance(e, Finished))
    assert {s.speaker for s in finished.transcript.segments} == {"Speaker 1"}


@pytest.fixture(scope="module")
def whisper_engine_fixture():
    from webui.modules.engines.whisper_ct2 import WhisperEngine

    return WhisperEngine(EngineSettings(device="cpu"))
