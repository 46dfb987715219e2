"""A job writes to its own History row and no other (issue 16, item 2): ids are never reused, an
unfinished job's row cannot be deleted from under it, ended rows take no writes, History cannot
move while jobs run, a refused submit leaves no row, the per-user limit holds under concurrent
submits, and one history file has one server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.test_api import ROOT, start_server
from webui.context import AppContext
from webui.modules import history_db
from webui.modules.history import History
from webui.modules.jobs import JobQueue, LimitError, Limits
from webui.modules.transcript import TimedText, Transcript

CLIP = DATA / "english.wav"


def _job(history: History, name: str = "a.wav", owner: str = "") -> int:
    return history.create_job(name, f"/x/{name}", "m", {}, owner=owner)


def _done(history: History, job_id: int) -> None:
    history.mark_running(job_id)
    history.finish_job(job_id, Transcript(file="a.wav", duration=1.0, model="m", text="t",
                                          segments=[TimedText(0.0, 1.0, "t")]))


def test_a_deleted_jobs_id_never_goes_to_the_next_job(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    first, last = _job(history), _job(history)
    _done(history, last)
    assert history.delete(last)
    assert _job(history) > last  # SQLite without AUTOINCREMENT hands out max(id) + 1 = `last` again
    assert first < last


def test_an_old_database_keeps_its_jobs_and_checkpoints_when_ids_become_unique(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    with history_db.connect(path) as con:  # a file as the previous release left it
        for step in history_db.MIGRATIONS[:3]:
            for statement in step:
                con.execute(statement)
        con.execute("PRAGMA user_version=3")
        con.execute("INSERT INTO jobs (id, file_name, created_at, status) VALUES (7, 'old.wav', '2026-01-01', 'running')")
        con.execute("INSERT INTO checkpoints (job_id, header) VALUES (7, '{}')")
        con.execute("INSERT INTO checkpoint_windows (job_id, idx, data) VALUES (7, 0, '{\"index\": 0}')")
    history = History(path)
    assert history.get(7).file_name == "old.wav"
    assert history.checkpoint(7) == ({}, [{"index": 0}])
    assert _job(history) == 8
    with history_db.connect(path) as con:
        assert "AUTOINCREMENT" in con.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]


def test_an_unfinished_job_cannot_be_deleted_and_an_ended_row_takes_no_writes(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    queued, running = _job(history), _job(history)
    history.mark_running(running)
    assert not history.delete(queued) and not history.delete(running)
    assert history.begin_checkpoint(running, {"h": 1})
    _done(history, running)
    assert not history.add_checkpoint_window(running, {"index": 3})      # ended: nothing written
    assert not history.begin_checkpoint(running, {"h": 2})
    assert not history.mark_running(running)
    assert not history.fail_job(running, "late failure")                  # a stale runner cannot overwrite it
    assert history.get(running).status == "done" and history.get(running).text == "t"


def test_a_vanished_rows_runner_cannot_write_into_the_next_job(tmp_path: Path) -> None:
    """Job A's row disappears while A runs (another process or tool removed it); job B is created
    next. A's checkpoint and its final text must not land in B's row."""
    history = History(tmp_path / "h.db")
    a = _job(history, "a.wav", owner="alice")
    history.mark_running(a)
    with history_db.connect(history.path) as con:
        con.execute("DELETE FROM jobs WHERE id = ?", (a,))
    b = _job(history, "b.wav", owner="bob")
    assert b != a
    assert not history.add_checkpoint_window(a, {"index": 0})
    assert not history.finish_job(a, Transcript(file="a.wav", duration=1.0, model="m", text="A's words"))
    assert history.get(b).text == "" and history.get(b).status == "queued"
    assert history.checkpoint(b) == (None, [])


def test_history_cannot_move_while_jobs_are_unfinished(tmp_path: Path) -> None:
    ctx = AppContext.create(tmp_path / "settings.json", str(tmp_path / "h.db"))
    visitor = ctx.visitor(None)
    job = _job(ctx.history)
    with pytest.raises(ValueError, match="cannot change while jobs are queued or running"):
        ctx.update(ctx.settings.with_changes(history_path=str(tmp_path / "other.db")), visitor)
    assert ctx.history.path == tmp_path / "h.db" and not (tmp_path / "other.db").exists()
    ctx.history.fail_job(job, "cancelled", status="cancelled")
    ctx.update(ctx.settings.with_changes(history_path=str(tmp_path / "other.db")), visitor)
    assert ctx.history.path == tmp_path / "other.db"


def test_a_submit_refused_at_shutdown_leaves_no_row(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    queue = JobQueue(history)
    queue.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        queue.submit(CLIP)
    assert history.count() == 0  # else the next start would run a job its user was told was refused


def test_the_per_user_limit_holds_when_submits_race(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    gate = threading.Event()

    def blocked_engine(settings):  # keeps the first job running, so it counts against the limit
        gate.wait(30)
        raise RuntimeError("stop")

    queue = JobQueue(history, engine_factory=blocked_engine)
    queue.limits = Limits(max_jobs_per_owner=1)
    start = threading.Barrier(8)
    accepted, refused = [], []

    def submit() -> None:
        start.wait()
        try:
            accepted.append(queue.submit(CLIP, owner="bob"))
        except LimitError:
            refused.append(1)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    gate.set()
    queue.shutdown()
    assert len(accepted) == 1 and len(refused) == 7
    assert history.count() == 1


def test_one_history_file_has_one_server(tmp_path: Path) -> None:
    lock = history_db.ServerLock(tmp_path / "h.db")
    with pytest.raises(history_db.ServedElsewhere, match=r"already served by PID \d+"):
        history_db.ServerLock(tmp_path / "h.db")
    lock.release()
    history_db.ServerLock(tmp_path / "h.db").release()  # free again once released


def test_a_second_server_on_the_same_history_exits_with_the_reason(tmp_path: Path) -> None:
    first = start_server(tmp_path / "srv")
    try:
        env = {"PYTHONPATH": str(ROOT), "WEBUI_SETTINGS": str(tmp_path / "srv" / "settings.json"),
               "PATH": "/usr/bin:/bin", "GRADIO_ANALYTICS_ENABLED": "False"}
        second = subprocess.run([sys.executable, "-m", "webui.app", "--port", "0"], cwd=tmp_path / "srv", env=env,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"already served by PID {first.process.pid}" in second.stderr
    finally:
        first.stop()
    with sqlite3.connect(first.history_path) as con:
        assert con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
