"""History store against a real SQLite file: round trips, search, housekeeping, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from webui.modules.history import History, JobRecord
from webui.modules.history_db import SCHEMA_VERSION
from webui.modules.transcript import TimedText, Transcript, render

NASTY_NAME = '会议 "quarterly" $(rm -rf ~) 50%_off\\.wav'


def make_transcript(file: str = "a.wav", text: str = "hello world", text_itn: str = "") -> Transcript:
    return Transcript(
        file=file, duration=12.5, model="sensevoice", language="zh", text=text, text_itn=text_itn,
        segments=[TimedText(0.0, 1.25, "今天天气很好", "今天天气很好。"), TimedText(1.25, 3.5, 'say "hi"', "")],
    )


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "nested" / "dir" / "history.db")


def utc(days_ago: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=days_ago)


# --- opening -----------------------------------------------------------------


def test_open_creates_folder_schema_and_wal(history: History) -> None:
    assert history.path.is_file()
    con = sqlite3.connect(history.path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"jobs_created_at", "jobs_status"} <= indexes
    finally:
        con.close()


def test_future_schema_version_raises(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(RuntimeError, match="newer version"):
        History(path)


def test_reopening_keeps_data_and_does_not_remigrate(history: History) -> None:
    job = history.create_job("a.wav", "/x/a.wav", "m", {"k": 1})
    history.finish_job(job, make_transcript())
    again = History(history.path)
    assert again.count() == 1
    record = again.get(job)
    assert record is not None and record.status == "done" and record.text == "hello world"


def test_path_is_settable(history: History, tmp_path: Path) -> None:
    history.create_job("old.wav", "", "m", {})
    history.path = tmp_path / "other" / "history.db"
    assert history.path.is_file()
    assert history.count() == 0
    history.create_job("new.wav", "", "m", {})
    assert [r.file_name for r in History(tmp_path / "other" / "history.db").search()] == ["new.wav"]


# --- lifecycle ---------------------------------------------------------------


def test_create_finish_get_round_trip_with_unicode(history: History) -> None:
    settings = {"language": "auto", "vad": {"max_seconds": 30}, "备注": "引号 \" '"}
    job = history.create_job(NASTY_NAME, f"/tmp/{NASTY_NAME}", "sensevoice", settings)

    queued = history.get(job)
    assert queued is not None
    assert (queued.status, queued.file_name, queued.settings) == ("queued", NASTY_NAME, settings)
    assert queued.file_path == f"/tmp/{NASTY_NAME}"
    assert queued.started_at is None and queued.finished_at is None and queued.segments == []

    assert history.mark_running(job)
    running = history.get(job)
    assert running is not None and running.status == "running" and running.started_at is not None

    transcript = make_transcript(NASTY_NAME, text="今天天气很好 say \"hi\"", text_itn="今天天气很好。")
    assert history.finish_job(job, transcript)
    done = history.get(job)
    assert isinstance(done, JobRecord)
    assert done.status == "done" and done.error == "" and done.finished_at is not None
    assert done.finished_at >= done.started_at >= done.created_at
    assert (done.duration, done.language, done.text, done.text_itn) == (12.5, "zh", transcript.text, "今天天气很好。")
    assert done.segments == transcript.to_dict()["segments"]
    assert done.archived is False
    assert done.to_transcript() == transcript


def test_get_missing_returns_none_and_updates_report_missing(history: History) -> None:
    assert history.get(999) is None
    assert history.mark_running(999) is False
    assert history.finish_job(999, make_transcript()) is False
    assert history.fail_job(999, "boom") is False


def test_fail_and_cancel(history: History) -> None:
    failed = history.create_job("f.wav", "", "m", {})
    cancelled = history.create_job("c.wav", "", "m", {})
    assert history.fail_job(failed, "CUDA out of memory; it's 'bad'")
    assert history.fail_job(cancelled, "stopped by user", status="cancelled")
    f, c = history.get(failed), history.get(cancelled)
    assert f is not None and (f.status, f.error) == ("failed", "CUDA out of memory; it's 'bad'")
    assert c is not None and (c.status, c.error) == ("cancelled", "stopped by user")
    assert f.finished_at is not None


@pytest.mark.parametrize("call", [
    lambda h: h.create_job("a", "", "m", {}, status="bogus"),
    lambda h: h.create_job("a", "", "m", ["not", "a", "dict"]),
    lambda h: h.fail_job(1, "x", status="done"),
    lambda h: h.archive_older_than(-1),
    lambda h: h.archive_older_than(1.5),
    lambda h: h.search(limit=0),
    lambda h: h.search(status="bogus"),
    lambda h: h.search(date_from="yesterday"),
    lambda h: h.search(date_from="2024-02-01", date_to="2024-01-01"),
])
def test_bad_arguments_raise_value_error(history: History, call) -> None:
    history.create_job("a.wav", "", "m", {})
    with pytest.raises(ValueError):
        call(history)
    assert history.count() == 1  # nothing half-written


def test_delete(history: History) -> None:
    keep = history.create_job("keep.wav", "", "m", {})
    drop = history.create_job("drop.wav", "", "m", {}, status="done")
    assert history.delete(keep) is False  # queued: its runner still writes to it
    assert history.delete(drop) is True
    assert history.delete(drop) is False
    assert history.get(drop) is None
    assert [r.id for r in history.search()] == [keep]
    assert history.count() == 1


def test_a_stored_transcript_renders_as_the_original_in_every_format(history: History) -> None:
    job = history.create_job("a.wav", "", "sensevoice", {})
    transcript = make_transcript()
    history.finish_job(job, transcript)
    stored = history.get(job).to_transcript()
    for fmt in ("txt", "srt", "vtt", "json"):
        assert render(stored, fmt) == render(transcript, fmt)
    assert "今天天气很好。" in render(stored, "srt")
    assert json.loads(render(stored, "json"))["segments"][1]["text"] == 'say "hi"'
    assert history.get(12345) is None


# --- search ------------------------------------------------------------------


@pytest.fixture
def filled(history: History) -> dict[str, int]:
    ids = {
        "old": history.create_job("board meeting.wav", "", "m", {}, created_at=datetime(2024, 1, 10, 23, 59, 59)),
        "mid": history.create_job("interview.mp3", "", "m", {}, created_at=datetime(2024, 1, 11, 0, 0, 0)),
        "new": history.create_job("lecture 100%_done.m4a", "", "m", {}, created_at=datetime(2024, 1, 12, 8, 0)),
        "cjk": history.create_job(NASTY_NAME, "", "m", {}, created_at=datetime(2024, 1, 13, 8, 0)),
    }
    history.finish_job(ids["old"], make_transcript(text="budget review for Q3", text_itn="budget review for Q3"))
    history.finish_job(ids["mid"], make_transcript(text="we talked about hiring", text_itn=""))
    history.finish_job(ids["cjk"], make_transcript(text="今天天气很好", text_itn="今天天气很好。"))
    history.fail_job(ids["new"], "decoder crashed")
    return ids


def ids_of(records: list[JobRecord]) -> list[int]:
    return [r.id for r in records]


def test_search_all_newest_first(history: History, filled: dict[str, int]) -> None:
    assert ids_of(history.search()) == [filled["cjk"], filled["new"], filled["mid"], filled["old"]]
    assert ids_of(history.search(limit=2)) == [filled["cjk"], filled["new"]]


def test_search_text(history: History, filled: dict[str, int]) -> None:
    assert ids_of(history.search(text="budget")) == [filled["old"]]
    assert ids_of(history.search(text="HIRING")) == [filled["mid"]]  # case-insensitive
    assert ids_of(history.search(text="天气")) == [filled["cjk"]]  # a word inside an unspaced sentence
    assert ids_of(history.search(text="天气很好。")) == [filled["cjk"]]  # only in text_itn
    assert ids_of(history.search(text="interview")) == [filled["mid"]]  # file name counts as text
    assert ids_of(history.search(text="budget Q3")) == [filled["old"]]  # all words must match
    assert history.search(text="budget hiring") == []
    assert history.search(text="nothing like this") == []


def test_search_wildcards_and_quotes_are_literal(history: History, filled: dict[str, int]) -> None:
    assert ids_of(history.search(name="100%_")) == [filled["new"]]
    assert ids_of(history.search(name="50%_off\\")) == [filled["cjk"]]
    assert ids_of(history.search(name="%")) == [filled["cjk"], filled["new"]]
    assert ids_of(history.search(name="_")) == [filled["cjk"], filled["new"]]
    assert history.search(name="board_meeting") == []  # "_" is not a one-character wildcard
    assert ids_of(history.search(name='"quarterly" $(rm -rf ~)')) == [filled["cjk"]]
    assert history.search(text="' OR 1=1 --") == []
    assert history.count() == 4


def test_search_name(history: History, filled: dict[str, int]) -> None:
    assert ids_of(history.search(name="MEETING")) == [filled["old"]]
    assert ids_of(history.search(name="会议")) == [filled["cjk"]]
    assert history.search(name="budget") == []  # name does not look at the transcript


def test_search_date_range_is_inclusive_utc_days(history: History, filled: dict[str, int]) -> None:
    assert ids_of(history.search(date_from="2024-01-11", date_to="2024-01-11")) == [filled["mid"]]
    assert ids_of(history.search(date_to=date(2024, 1, 10))) == [filled["old"]]
    assert ids_of(history.search(date_from=date(2024, 1, 12))) == [filled["cjk"], filled["new"]]
    assert ids_of(history.search(date_from="2024-01-10", date_to="2024-01-12")) == [
        filled["new"], filled["mid"], filled["old"]]
    assert history.search(date_from="2024-02-01") == []


def test_created_at_with_timezone_is_stored_as_utc(history: History) -> None:
    # 2024-03-01 01:00 in UTC+8 is still 2024-02-29 in UTC.
    job = history.create_job("tz.wav", "", "m", {},
                             created_at=datetime(2024, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=8))))
    assert ids_of(history.search(date_from="2024-02-29", date_to="2024-02-29")) == [job]
    record = history.get(job)
    assert record is not None and record.created_at.startswith("2024-02-29T17:00:00")


def test_naive_created_at_means_utc_whatever_the_local_zone(history: History, monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        job = history.create_job("naive.wav", "", "m", {}, created_at=datetime(2024, 5, 1, 23, 30))
    finally:
        monkeypatch.undo()
        time.tzset()
    record = history.get(job)
    assert record is not None and record.created_at.startswith("2024-05-01T23:30:00")


def test_search_status(history: History, filled: dict[str, int]) -> None:
    assert ids_of(history.search(status="failed")) == [filled["new"]]
    assert ids_of(history.search(status=["failed", "done"])) == ids_of(history.search())
    assert ids_of(history.search(status="done", text="budget")) == [filled["old"]]
    assert history.search(status="running") == []


# --- housekeeping -------------------------------------------------------------


def test_archive_older_than(history: History) -> None:
    ancient = history.create_job("ancient.wav", "", "m", {}, created_at=utc(400))
    old = history.create_job("old.wav", "", "m", {}, created_at=utc(31))
    recent = history.create_job("recent.wav", "", "m", {}, created_at=utc(29))
    fresh = history.create_job("fresh.wav", "", "m", {})

    assert history.archive_older_than(365) == 1
    assert history.archive_older_than(30) == 1  # ancient is not counted twice
    assert history.archive_older_than(30) == 0

    assert ids_of(history.search()) == [fresh, recent]
    assert ids_of(history.search(include_archived=True)) == [fresh, recent, old, ancient]
    assert ids_of(history.search(name="old")) == []
    archived = history.get(old)
    assert archived is not None and archived.archived is True
    assert history.count() == 4 and history.count(include_archived=False) == 2

    assert history.archive_older_than(0) == 2
    assert history.search() == []


def test_vacuum_keeps_a_valid_file(history: History) -> None:
    ids = [history.create_job(f"{i}.wav", "", "m", {"pad": "x" * 5000}, status="done") for i in range(50)]
    for job in ids[:45]:
        history.delete(job)
    history.vacuum()
    con = sqlite3.connect(history.path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
    reopened = History(history.path)
    assert ids_of(reopened.search()) == list(reversed(ids[45:]))


# --- concurrency --------------------------------------------------------------


def write_jobs(path: str, tag: str, n: int = 50) -> list[int]:
    """Worker for the thread and process tests: a full job lifecycle per iteration."""
    history = History(path)
    ids = []
    for i in range(n):
        job = history.create_job(f"{tag}-{i}.wav", "", "m", {"i": i})
        history.mark_running(job)
        history.finish_job(job, make_transcript(file=f"{tag}-{i}.wav", text=f"{tag} {i}"))
        ids.append(job)
    return ids


def test_two_threads_lose_nothing(history: History) -> None:
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def run(tag: str) -> None:
        try:
            results[tag] = write_jobs(str(history.path), tag)
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    all_ids = results["a"] + results["b"]
    assert history.count() == 100 and len(set(all_ids)) == 100
    assert len(history.search(status="done", limit=1000)) == 100
    assert len(history.search(text="a", name="a-", limit=1000)) == 50


def open_fresh_files(folder: str, start_at: float, n: int) -> int:
    """Worker: open n brand-new history files, in the same order and from the same moment as
    the other workers, so that several processes switch one new file to WAL at once."""
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(n):
        History(Path(folder) / f"h{i}.db")
    return n


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # SQLite answers "database is locked" at once, without waiting, when two processes switch
    # one new file to WAL together; the CLI and the server do exactly that on a first run.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        start_at = time.time() + 3  # after every worker has started up
        opened = pool.starmap(open_fresh_files, [(str(tmp_path), start_at, 80)] * 4)
    assert opened == [80] * 4
    assert all(History(tmp_path / f"h{i}.db").count() == 0 for i in range(80))


def test_two_processes_lose_nothing(tmp_path: Path) -> None:
    # Both processes open a brand-new file at once, so the migration race is covered too.
    path = str(tmp_path / "history.db")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        a, b = pool.starmap(write_jobs, [(path, "p"), (path, "q")])
    history = History(path)
    assert history.count() == 100 and len(set(a + b)) == 100
    assert {r.file_name for r in history.search(limit=1000)} == {
        f"{tag}-{i}.wav" for tag in "pq" for i in range(50)}
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        con.close()


def test_cancelled_job_keeps_its_partial_transcript(tmp_path):
    from webui.modules.transcript import TimedText, Transcript

    h = History(tmp_path / "h.db")
    job = h.create_job("talk.mp3", "/x/talk.mp3", "whisper-base", {})
    partial = Transcript("talk.mp3", 3600.0, "whisper-base", "en", "first half", "", [TimedText(0.0, 2.0, "first half")])
    assert h.finish_job(job, partial, status="cancelled", error="cancelled by the user")
    record = h.get(job)
    assert record.status == "cancelled" and record.text == "first half" and len(record.segments) == 1
    with pytest.raises(ValueError):
        h.finish_job(job, partial, status="queued")
