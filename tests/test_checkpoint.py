"""Checkpoints (checkpoint.py): every finished window is stored as it finishes, and a run that
was killed resumes at its first unfinished window with the same transcript."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.fakes import EchoEngine
from tests.recordings import build, load_clips
from webui.modules import checkpoint
from webui.modules.events import Finished, WindowDone
from webui.modules.history import History
from webui.modules.jobs import DONE, JobQueue
from webui.modules.options import PipelineOptions
from webui.modules.pipeline import transcribe

ROOT = Path(__file__).resolve().parent.parent
LONG = DATA / "two_cities.wav"  # 44 s of speech: several windows of 10 s
OPTIONS = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=10.0,
                          first_window_seconds=10.0)


def run(path, options=OPTIONS, resume=None, store=None):
    engine = EchoEngine(cap=2)
    events = transcribe(path, options, engine=engine, resume=resume)
    if store is not None:
        events = checkpoint.persist(events, store, path, options, resuming=resume is not None)
    events = list(events)
    return events, engine


def test_a_resumed_run_redoes_only_what_was_not_finished_and_gives_the_same_transcript(tmp_path):
    full_events, full_engine = run(LONG, store=checkpoint.Sidecar(tmp_path / "full.jsonl"))
    windows = [e for e in full_events if isinstance(e, WindowDone)]
    assert len(windows) >= 3
    # A run killed after two windows: its sidecar holds the header and those two windows.
    sidecar = checkpoint.Sidecar(tmp_path / "killed.jsonl")
    lines = (tmp_path / "full.jsonl").read_text().splitlines()
    sidecar.path.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # cut mid-line
    head, stored = sidecar.load()
    resume = checkpoint.resume_from(LONG, OPTIONS, head, stored)
    assert resume is not None and [w.index for w in resume.done] == [0, 1]
    events, engine = run(LONG, resume=resume, store=sidecar)
    full, again = full_events[-1], events[-1]
    assert isinstance(again, Finished) and again.transcript == full.transcript
    assert again.stats.resumed_windows == 2 and again.stats.batches == full.stats.batches
    done_inputs = sum(len(b) for b in engine.batches)
    assert 0 < done_inputs < sum(len(b) for b in full_engine.batches)
    assert len(checkpoint.Sidecar(sidecar.path).load()[1]) == len(windows)  # appended to the same file


def test_a_checkpoint_of_another_file_or_other_options_is_not_used(tmp_path):
    sidecar = checkpoint.Sidecar(tmp_path / "c.jsonl")
    run(LONG, store=sidecar)
    head, stored = sidecar.load()
    assert checkpoint.resume_from(LONG, OPTIONS, head, stored) is not None
    from dataclasses import replace

    # ITN runs once at the end: switching it does not invalidate the windows.
    assert checkpoint.resume_from(LONG, replace(OPTIONS, itn=True), head, stored) is not None
    assert checkpoint.resume_from(LONG, replace(OPTIONS, snap_seconds=0.1), head, stored) is None
    copy = tmp_path / "copy.wav"
    shutil.copy(LONG, copy)
    assert checkpoint.resume_from(copy, OPTIONS, head, stored) is not None  # same bytes, same identity
    with open(copy, "r+b") as f:
        f.seek(os.path.getsize(copy) // 2)
        f.write(b"\x7f" * 64)
    assert checkpoint.resume_from(copy, OPTIONS, head, stored) is None
    assert checkpoint.resume_from(LONG, OPTIONS, {"version": 99}, stored) is None
    assert checkpoint.Sidecar(tmp_path / "missing.jsonl").load() == (None, [])


def test_the_job_queue_resumes_a_job_a_killed_process_left_running(tmp_path):
    """A process running a job is killed (-9) after two windows; a new queue over the same
    History resumes it and the transcript equals an uninterrupted run's."""
    db = tmp_path / "history.db"
    script = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from tests.fakes import EchoEngine
from webui.modules.history import History
from webui.modules.jobs import JobQueue
from webui.modules.options import PipelineOptions

class Slow(EchoEngine):
    def transcribe_batch(self, audios, language="auto"):
        time.sleep(0.4)
        return super().transcribe_batch(audios, language)

opts = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=10.0,
                       first_window_seconds=10.0)
queue = JobQueue(History({str(db)!r}), engine_factory=lambda s: Slow(cap=1))
queue.submit({str(LONG)!r}, opts)
time.sleep(600)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    history = History(db)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (history.count() == 0 or len(history.checkpoint(1)[1]) < 2):
            time.sleep(0.1)
        assert len(history.checkpoint(1)[1]) >= 2, "the job never checkpointed two windows"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert history.get(1).status == "running"
    engine = EchoEngine(cap=2)
    queue = JobQueue(history, engine_factory=lambda s: engine)
    try:
        assert queue.resume_unfinished() == 1
        state = queue.wait(queue.jobs()[0].id, timeout=60)
    finally:
        queue.shutdown()
    assert state.status == DONE and state.history_id == 1 and state.stats.resumed_windows >= 2
    uninterrupted = run(LONG)[0][-1].transcript
    assert state.transcript.text == uninterrupted.text and state.transcript.segments == uninterrupted.segments
    record = history.get(1)
    assert record.status == "done" and record.text == uninterrupted.text
    assert history.checkpoint(1) == (None, [])  # dropped once the job is stored


def test_a_job_whose_file_is_gone_ends_failed_with_the_text_it_had(tmp_path):
    audio = tmp_path / "talk.wav"
    shutil.copy(LONG, audio)
    history = History(tmp_path / "history.db")
    job = history.create_job("talk.wav", str(audio), "echo", json.loads(json.dumps({})))
    sidecar = checkpoint.Sidecar(tmp_path / "c.jsonl")
    run(audio, store=sidecar)
    head, windows = sidecar.load()
    history.mark_running(job)  # a checkpoint is only ever written for a running job
    assert history.begin_checkpoint(job, head)
    assert history.add_checkpoint_window(job, windows[0])
    audio.unlink()
    queue = JobQueue(history, engine_factory=lambda s: EchoEngine())
    try:
        assert queue.resume_unfinished() == 0
    finally:
        queue.shutdown()
    record = history.get(job)
    assert record.status == "failed" and "Cannot resume talk.wav" in record.error
    assert record.segments and record.text  # the finished window's text is kept


@pytest.mark.slow
def test_cli_killed_half_way_resumes_with_at_most_one_window_redone(tmp_path):
    """A 20-minute recording through the real CLI and model: kill -9 at about half way, run the
    same command again; the transcript equals an uninterrupted run's."""
    recording = tmp_path / "meeting.flac"
    build(recording, 20, seed=7, clips=load_clips())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "webui.cli", "transcribe", str(recording), "--format", "json", "--no-itn",
            "--window", "120", "--quiet"]

    started = time.perf_counter()
    subprocess.run([*args, "--out", str(tmp_path / "full")], check=True, env=env, cwd=ROOT, timeout=900)
    full_seconds = time.perf_counter() - started

    out = tmp_path / "resumed"
    sidecar = out / "meeting.checkpoint.jsonl"
    proc = subprocess.Popen([*args, "--out", str(out)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None:
            head, windows = checkpoint.Sidecar(sidecar).load()
            if head and len(windows) >= 0.45 * len(head["plan"]["windows"]):
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    head, windows = checkpoint.Sidecar(sidecar).load()
    total = len(head["plan"]["windows"])
    assert 0 < len(windows) < total, "killed too early or too late"
    started = time.perf_counter()
    again = subprocess.run([*args, "--out", str(out)], env=env, cwd=ROOT, timeout=900, capture_output=True, text=True)
    resumed_seconds = time.perf_counter() - started
    assert again.returncode == 0, again.stderr
    assert f"{len(windows)} of {total} windows done" in again.stderr
    redone = (total - len(windows)) / total
    print(f"full run {full_seconds:.1f} s; killed after {len(windows)} of {total} windows; "
          f"resumed run {resumed_seconds:.1f} s ({resumed_seconds / full_seconds:.0%}); windows redone {redone:.0%}")
    assert redone <= 0.60
    full = json.loads((tmp_path / "full" / "meeting.json").read_text())
    resumed = json.loads((out / "meeting.json").read_text())
    assert resumed["text"] == full["text"] and resumed["segments"] == full["segments"]
    assert not sidecar.exists()  # removed once the outputs are written
