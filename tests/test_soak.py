"""A short soak (scripts/bench/soak.py): 8 recordings of 10 s to 2 min back to back through the
job queue with the bundled model and a real History file, bad files in between. Runs in a fresh
process, so the RSS, fd and thread counts are the queue's own and not whatever earlier tests left.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from webui.modules.history import History

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = "10s,15s,20s,30s,45s,1m,2m,20s"  # 5.3 min of audio
KNOWN = {"silent-truncated"}  # see test_a_truncated_recording_is_not_silently_done


@pytest.fixture(scope="module")
def soak(tmp_path_factory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("soak")
    out = work / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "soak.py"), "--lengths", LENGTHS, "--work", str(work),
         "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout)  # the table, shown with -s or when a test fails
    return json.loads(out.read_text(encoding="utf-8")), work / "history.db"


def test_soak_every_good_recording_done_every_bad_file_a_clear_message(soak) -> None:
    result, db = soak
    rows = result["rows"]
    good = [r for r in rows if r["kind"] == "good"]
    bad = {r["kind"]: r for r in rows if r["kind"] != "good"}
    assert len(good) == 8 and all(r["status"] == "done" for r in good), [(r["file"], r["message"]) for r in good]
    assert all(r["text_chars"] > 0 for r in good)  # every recording has speech
    for kind in ("empty", "not-audio", "folder", "missing", "video-no-audio"):
        assert bad[kind]["status"] == "refused", bad[kind]
    assert "file is empty" in bad["empty"]["message"]
    assert "not a readable audio or video file" in bad["not-audio"]["message"]
    assert "is a directory" in bad["folder"]["message"]
    assert "file not found" in bad["missing"]["message"]
    assert "no audio stream" in bad["video-no-audio"]["message"]
    assert bad["vanished"]["status"] == "failed"
    assert bad["vanished"]["message"] == "Cannot transcribe vanished.flac: file not found"
    for r in bad.values():
        assert "\n" not in r["message"] and "Traceback" not in r["message"]
    assert result["tracebacks"] == []
    assert [p for p in result["problems"] if p[0] not in KNOWN] == []

    # History, opened afresh: every job's row, no checkpoint left, nothing corrupted.
    history = History(db)
    for r in good:
        record = history.get(r["history_id"])
        assert record.status == "done" and record.text
        assert history.checkpoint(r["history_id"]) == (None, [])
    assert history.get(bad["vanished"]["history_id"]).status == "failed"
    assert history.count() == len(good) + 2  # + truncated and vanished; the refused never reach History
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM checkpoint_windows").fetchone()[0] == 0


def test_soak_nothing_leaks(soak) -> None:
    result, _ = soak
    rows = result["rows"]
    good = [r for r in rows if r["kind"] == "good"]
    warm = result["warm"]
    # After the first job (model loaded, worker thread up) every idle moment has exactly the same
    # open fds, Python threads and OS threads: one leaked pipe or reader thread per job fails this.
    for r in rows:
        assert (r["fds"], r["threads"], r["tasks"]) == (warm["fds"], warm["threads"], warm["tasks"]), r
    # Shut down, the queue's worker thread is gone and its files closed.
    assert result["after_shutdown"]["threads"] == result["cold"]["threads"]
    assert result["after_shutdown"]["fds"] == result["cold"]["fds"]
    # Host RSS flat: the last job within 10 % of the second recording's.
    second, last = good[1]["rss_mb"], rows[-1]["rss_mb"]
    assert abs(last / second - 1) <= 0.10, (second, last)
    # history.db (+ WAL) grew with the stored text only: checkpoints freed, the WAL not piling up.
    growth = result["db_end"] - result["db_start"]
    assert 0 < growth <= result["db_allowance"], (growth, result["stored"])
    assert result["checkpoints_left"] == 0 and result["integrity"] == "ok"


def test_a_truncated_recording_is_not_silently_done(soak) -> None:
    result, _ = soak
    truncated = next(r for r in result["rows"] if r["kind"] == "truncated")
    assert truncated["status"] == "failed" or truncated["warnings"], truncated
