"""The CLI end to end with the bundled model: outputs, formats, and bad input next to good input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, ffmpeg, quiet, write_wav

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "webui.cli", "transcribe", *args], capture_output=True,
                          text=True, env=env, cwd=cwd or ROOT, timeout=600)


def test_all_formats_and_a_bad_file_beside_good_ones(tmp_path):
    weird = tmp_path / "it's $(touch pwned) 中文.mp3"
    ffmpeg("-i", str(DATA / "jfk.flac"), "-c:a", "libmp3lame", str(weird))
    missing = tmp_path / "missing.wav"
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 100)
    out = tmp_path / "out"
    proc = run_cli(str(missing), str(weird), str(garbage), str(DATA / "goforward.wav"),
                   "--format", "all", "--out", str(out), "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2, proc.stderr
    assert "missing.wav: file not found" in errors[0]
    assert "garbage.wav" in errors[1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "pwned").exists()

    stem = weird.stem
    data = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
    assert set(data) >= {"file", "duration", "model", "text", "text_itn", "segments"}
    assert data["file"] == weird.name and data["model"] == "whisper-base"
    assert data["duration"] == pytest.approx(11.0, abs=0.1)
    assert "ask not what your country can do for you" in data["text"].lower()
    starts = [s["start"] for s in data["segments"]]
    assert starts == sorted(starts) and all(s["end"] >= s["start"] for s in data["segments"])
    srt = (out / f"{stem}.srt").read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:00,") and " --> " in srt
    assert (out / f"{stem}.vtt").read_text(encoding="utf-8").startswith("WEBVTT\n\n00:00:")
    assert "fellow Americans" in (out / f"{stem}.txt").read_text(encoding="utf-8")
    # ITN ran: "ten meters" → "10 m" in the normalised text, the raw text kept beside it.
    go = json.loads((out / "goforward.json").read_text())
    assert "10" in go["text_itn"]


def test_silence_gives_an_empty_transcript_not_an_error(tmp_path):
    path = write_wav(tmp_path / "silence.wav", quiet(20.0, -90.0))
    proc = run_cli(str(path), "--format", "json", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "silence.json").read_text())
    assert data["text"] == "" and data["segments"] == [] and data["duration"] == pytest.approx(20.0, abs=0.05)


def test_no_itn_and_bad_option(tmp_path):
    proc = run_cli(str(DATA / "goforward.wav"), "--no-itn", "--format", "json", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "goforward.json").read_text())["text_itn"] == ""
    proc = run_cli(str(DATA / "goforward.wav"), "--max-segment", "lots")
    assert proc.returncode == 2 and "--max-segment" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_model_folder_is_a_clear_error(tmp_path):
    proc = run_cli(str(DATA / "goforward.wav"), "--model", str(tmp_path / "no-such-model"), "--quiet")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:")


def test_plan_shows_every_stage_before_the_model_and_needs_no_model(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), WEBUI_CACHE_DIR=str(tmp_path / "empty-cache"))  # no model there
    proc = subprocess.run([sys.executable, "-m", "webui.cli", "plan", str(DATA / "two_cities.wav"), "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["duration"] == pytest.approx(44.0, abs=0.5) and plan["max_segment_seconds"] == 30.0
    segments = plan["segments"]
    assert segments[0]["start"] == 0 and segments[-1]["end"] == pytest.approx(plan["duration"], abs=0.01)
    assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:]))
    assert sum(s["speech_seconds"] for s in segments) > 30
    assert [i for w in plan["windows"] for i in range(*w)] == list(range(len(segments)))
    assert {"probe", "decode + silence scan", "cut plan", "VAD", "total"} <= set(plan["seconds_by_stage"])
    assert not (tmp_path / "empty-cache").exists()  # the bundled model was never assembled
    text = subprocess.run([sys.executable, "-m", "webui.cli", "plan", str(DATA / "jfk.flac")], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert text.returncode == 0 and "× real time" in text.stdout and "decode + silence scan" in text.stdout
    bad = subprocess.run([sys.executable, "-m", "webui.cli", "plan", str(tmp_path / "missing.wav")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_whisper_on_the_cpu_never_imports_torch(tmp_path):
    """torch's import is 1.3 s of CPU and ~170 MB of RSS, a fifth of a short file's run: the
    CTranslate2 path on the CPU (device auto, no GPU here) must not pull it in."""
    child = ("import sys, runpy; sys.argv = ['webui.cli', 'transcribe', sys.argv[1], '--out', sys.argv[2], '--quiet'];"
             "code = 0\ntry:\n    runpy.run_module('webui.cli', run_name='__main__')\nexcept SystemExit as e:\n"
             "    code = e.code or 0\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
    done = subprocess.run([sys.executable, "-c", child, str(DATA / "jfk.flac"), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH 0", done.stdout + done.stderr[-2000:]
    assert "country" in (tmp_path / "jfk.txt").read_text()
