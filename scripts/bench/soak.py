"""Soak: many recordings back to back through the job queue, with bad files in between.

A real History file, the bundled Whisper model and the real pipeline, as the web app runs them.
After every job (the queue idle again) it measures the host RSS, the open file descriptors
(/proc/self/fd), the threads (threading.active_count and /proc/self/task) and the size of
history.db (+ its WAL); at the end it checks that

  * every good recording ended DONE, with its text in History and its checkpoint dropped
    (`History.checkpoint(id) == (None, [])`, both checkpoint tables empty);
  * every bad file got a clear one-line message: refused at submit (InputError) or a FAILED job
    whose error is one line and not an "unexpected"/"internal" error; a truncated recording may
    also end DONE, but then with a warning saying so; no traceback was logged;
  * RSS after the last job is within 10 % of RSS after the second recording;
  * fds and threads after every job equal those after the first (the model loaded, the worker
    thread started), and after shutdown the Python threads are back to their count before the
    queue existed;
  * history.db (+ WAL) grew only with the stored text.

    .venv/bin/python scripts/bench/soak.py                       # 20 recordings, 10 s .. 60 min
    .venv/bin/python scripts/bench/soak.py --lengths 10s,1m,5m,2m  # any set; bad files go in between

tests/test_soak.py runs a short version of the same thing in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# 20 recordings from 10 s to 60 min (about 5 h of audio); short ones first and last, so the RSS
# of the second and the last job compares like with like after the hour-long one has gone through.
DEFAULT_LENGTHS = "10s,30s,1m,2m,3m,5m,8m,10m,15m,20m,30m,45m,60m,30m,10m,5m,2m,1m,30s,10s"
# A shorter set: 68.5 min of audio, about 4 min on 2 CPU cores.
SHORT_LENGTHS = "10s,20s,30s,45s,1m,2m,3m,5m,8m,10m,15m,10m,5m,3m,2m,1m,45s,30s,20s,10s"
# "vanished" is queued behind a good job and deleted while that runs: the bad file that fails
# inside a job rather than at submit.
BAD_KINDS = ("empty", "not-audio", "truncated", "folder", "missing", "video-no-audio", "vanished")

RSS_TOLERANCE = 0.10


def parse_length(text: str) -> float:
    """'10s', '2m', '1.5m', '1h' or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([smh]?)\s*", text)
    if not m:
        raise ValueError(f"not a length: {text!r} (use e.g. 10s, 2m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def fmt_length(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    return f"{seconds / 60:g} min"


# --- what the process holds -----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    rss_mb: float
    fds: int
    threads: int   # threading.active_count(): Python threads
    tasks: int     # /proc/self/task: every OS thread (CTranslate2's, OpenMP's, ffmpeg readers)

    def counts(self) -> tuple[int, int, int]:
        return self.fds, self.threads, self.tasks


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sample() -> Sample:
    return Sample(rss_mb(), len(os.listdir("/proc/self/fd")), threading.active_count(),
                  len(os.listdir("/proc/self/task")))


def settle(expected: tuple[int, int, int] | None = None, timeout: float = 5.0) -> Sample:
    """A sample once the counts stop moving (an ffmpeg reader thread may take a moment to end),
    or at once when they equal `expected`."""
    deadline = time.monotonic() + timeout
    last = sample()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = sample()
        if expected is not None and now.counts() == expected:
            return now
        if expected is None and now.counts() == last.counts():
            return now
        last = now
    return last


def db_bytes(path: Path) -> int:
    """history.db plus its WAL (the -shm index is a fixed 32 KiB while a connection is open)."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def stored_bytes(path: Path) -> int:
    """What History holds for the jobs: names, settings, text, ITN text, segments."""
    with sqlite3.connect(path) as con:
        row = con.execute(
            "SELECT COALESCE(SUM(length(CAST(file_name AS BLOB)) + length(CAST(file_path AS BLOB))"
            " + length(CAST(settings AS BLOB)) + length(CAST(text AS BLOB)) + length(CAST(text_itn AS BLOB))"
            " + length(CAST(segments AS BLOB)) + length(CAST(error AS BLOB)) + length(model) + 80), 0)"
            " FROM jobs").fetchone()
    return int(row[0])


def checkpoint_rows(path: Path) -> int:
    with sqlite3.connect(path) as con:
        return sum(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("checkpoints", "checkpoint_windows"))


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as con:
        return con.execute("PRAGMA integrity_check").fetchone()[0]


# --- the files ------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    name: str
    kind: str            # "good" or one of BAD_KINDS
    seconds: float       # the recording's length (0 for most bad files)
    path: Path


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_bad(kind: str, folder: Path, donor: Path) -> Path:
    """One bad input of the given kind; `donor` is a good recording to cut or copy."""
    if kind == "empty":
        path = folder / "empty.wav"
        path.write_bytes(b"")
    elif kind == "not-audio":
        path = folder / "notes.mp3"
        path.write_text("minutes of the meeting, not a recording\n" * 200, encoding="utf-8")
    elif kind == "truncated":  # the first third of a FLAC whose header still says the full length
        path = folder / "truncated.flac"
        data = donor.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "folder":
        path = folder / "folder.wav"
        path.mkdir(exist_ok=True)
    elif kind == "missing":
        path = folder / "missing.wav"
    elif kind == "video-no-audio":
        path = folder / "video-no-audio.mp4"
        _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:d=3", "-c:v", "mpeg4", str(path))
    elif kind == "vanished":  # readable at submit, deleted before its turn
        path = folder / "vanished.flac"
        shutil.copyfile(donor, path)
    else:
        raise ValueError(f"unknown bad kind {kind!r}; choose from {', '.join(BAD_KINDS)}")
    return path


def build_items(folder: Path, lengths: Sequence[float], bad_kinds: Sequence[str] = BAD_KINDS,
                seed: int = 7, log: Callable[[str], None] = lambda s: None) -> list[Item]:
    """Good recordings (tests/recordings.build from the real speech clips) with the bad files
    spread evenly between them, the first job always a good one."""
    from tests.recordings import build, load_clips

    folder.mkdir(parents=True, exist_ok=True)
    clips = load_clips()
    good: list[Item] = []
    for n, seconds in enumerate(lengths, 1):
        path = folder / f"rec{n:02d}-{fmt_length(seconds).replace(' ', '')}.flac"
        started = time.perf_counter()
        # Short ones get short pauses, and another seed until a clip fits: every recording has
        # speech, so the first job already runs the model, ITN and a second pass (the warm state).
        gap = (0.5, 2.0) if seconds < 60 else (3.0, 12.0)
        for attempt in range(20):
            if build(path, seconds / 60, seed=seed + n + 1000 * attempt, gap=gap, clips=clips):
                break
        log(f"built {path.name} ({fmt_length(seconds)}) in {time.perf_counter() - started:.1f} s")
        good.append(Item(path.name, "good", seconds, path))
    donor = min(good, key=lambda i: abs(i.seconds - 60)).path
    bad = [Item(path.name, kind, 0.0, path) for kind in bad_kinds for path in [make_bad(kind, folder, donor)]]
    every = max(1, len(good) // (len(bad) + 1)) if bad else len(good) + 1
    if len(good) // every < len(bad):  # not all fit between good ones: "vanished" must (see run)
        bad.sort(key=lambda b: b.kind != "vanished")
    items: list[Item] = []
    for n, item in enumerate(good, 1):
        items.append(item)
        if bad and n % every == 0:
            items.append(bad.pop(0))
    return items + bad


# --- the run --------------------------------------------------------------------------


@dataclass
class Row:
    job: int
    item: Item
    status: str          # done | failed | cancelled | refused
    message: str         # the error, or the refusal, or the warnings
    warnings: tuple[str, ...]
    wall_s: float
    text_chars: int
    history_id: int | None
    after: Sample        # measured with the queue idle again
    db_bytes: int


@dataclass
class SoakResult:
    rows: list[Row]
    cold: Sample                 # before the queue existed
    warm: Sample                 # after the first job: model loaded, worker thread running
    after_shutdown: Sample
    db_start: int
    db_end: int
    stored: int
    transcribed_seconds: float
    checkpoints_left: int
    integrity: str
    tracebacks: list[str]        # log records that carried an exception
    wall_s: float
    peak_rss_mb: float = 0.0
    problems: list[tuple[str, str]] = field(default_factory=list)


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(f"{record.name}: {record.getMessage()} ({record.exc_info[0].__name__})")


def run(items: Sequence[Item], history_path: Path, options=None, engine_factory=None,
        on_row: Callable[[Row], None] = lambda r: None, job_timeout: float = 7200.0) -> SoakResult:
    """Submit the items one after another (a "vanished" one is queued behind the job before it
    and deleted while that runs), waiting for the queue to be idle between them."""
    from webui.modules.audio import InputError
    from webui.modules.engines import get_engine
    from webui.modules.engines.base import EngineSettings
    from webui.modules.history import History
    from webui.modules.jobs import JobQueue
    from webui.modules.options import PipelineOptions

    options = options or PipelineOptions(engine=EngineSettings(device="cpu"))
    catcher = _Tracebacks()
    logging.getLogger().addHandler(catcher)
    started = time.perf_counter()
    try:
        # ONNX Runtime opens its process-wide environment with the first session (the VAD's
        # voice check makes one) and keeps 3 files of it open for the process: opened once
        # before the cold sample, so that what the jobs leave behind is what is compared.
        import numpy as np
        from webui.modules.vads import voice_check

        voice_check.voice_probabilities(np.zeros(voice_check.WINDOW, dtype=np.float32))
        voice_check.release()
        cold = settle()
        history = History(history_path)
        db_start = db_bytes(history_path)
        queue = JobQueue(history, engine_factory=engine_factory or get_engine)
        rows: list[Row] = []
        warm: Sample | None = None
        # steps: the items submitted together, then waited for
        steps: list[list[Item]] = []
        for item in items:
            if item.kind == "vanished" and steps:
                steps[-1].append(item)
            else:
                steps.append([item])
        try:
            for step in steps:
                t0 = time.perf_counter()
                submitted: list[tuple[Item, str | None, str]] = []
                for item in step:
                    try:
                        submitted.append((item, queue.submit(item.path, options), ""))
                    except InputError as exc:
                        submitted.append((item, None, str(exc)))
                    if item.kind == "vanished":
                        item.path.unlink()
                states = {jid: queue.wait(jid, timeout=job_timeout) for _, jid, _ in submitted if jid}
                wall = time.perf_counter() - t0
                after = settle(warm.counts() if warm else None)
                if warm is None:
                    warm = after
                size = db_bytes(history_path)
                for item, jid, refusal in submitted:
                    if jid is None:
                        row = Row(len(rows) + 1, item, "refused", refusal, (), wall, 0, None, after, size)
                    else:
                        s = states[jid]
                        text = (s.transcript.text_itn or s.transcript.text) if s.transcript else ""
                        row = Row(len(rows) + 1, item, s.status, s.error or "; ".join(s.warnings), s.warnings,
                                  wall, len(text), s.history_id, after, size)
                    rows.append(row)
                    on_row(row)
        finally:
            queue.shutdown()
        after_shutdown = settle((cold.fds, cold.threads, cold.tasks), timeout=5.0)
        result = SoakResult(
            rows=rows, cold=cold, warm=warm or cold, after_shutdown=after_shutdown, db_start=db_start,
            db_end=db_bytes(history_path), stored=stored_bytes(history_path),
            transcribed_seconds=sum(r.item.seconds for r in rows if r.status == "done"),
            checkpoints_left=checkpoint_rows(history_path), integrity=integrity(history_path),
            tracebacks=list(catcher.records), wall_s=time.perf_counter() - started,
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
        result.problems = check(result, history)
        return result
    finally:
        logging.getLogger().removeHandler(catcher)


def _one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message \
        and not message.startswith(("Unexpected error", "internal error"))


def check(result: SoakResult, history) -> list[tuple[str, str]]:
    """(key, what is wrong) for every broken promise; empty when the soak is clean."""
    problems: list[tuple[str, str]] = []
    for r in result.rows:
        label = f"job {r.job} ({r.item.name})"
        if r.item.kind == "good":
            if r.status != "done":
                problems.append(("good-not-done", f"{label}: {r.status}: {r.message}"))
                continue
            record = history.get(r.history_id) if r.history_id is not None else None
            if record is None or record.status != "done":
                problems.append(("history", f"{label}: History has {record and record.status!r}"))
            if history.checkpoint(r.history_id) != (None, []):
                problems.append(("checkpoint-left", f"{label}: its checkpoint is still in history.db"))
        elif r.status == "refused" or r.status == "failed":
            if not _one_line(r.message):
                problems.append(("unclear-message", f"{label}: {r.status} with {r.message!r}"))
        elif r.status == "done" and r.item.kind == "truncated":
            if not r.warnings:
                problems.append(("silent-truncated", f"{label}: DONE ({r.text_chars} characters) with no "
                                 "warning that the audio ends early"))
        else:
            problems.append(("bad-not-refused", f"{label}: {r.status}: {r.message!r}"))
    good = [r for r in result.rows if r.item.kind == "good"]
    if len(good) >= 2:
        second, last = good[1].after.rss_mb, result.rows[-1].after.rss_mb
        if abs(last / second - 1) > RSS_TOLERANCE:
            problems.append(("rss", f"RSS after the last job {last:.0f} MB vs {second:.0f} MB after the second "
                             f"recording ({last / second - 1:+.1%}; tolerance ±{RSS_TOLERANCE:.0%})"))
    for r in result.rows:
        if r.after.counts() != result.warm.counts():
            problems.append(("leak", f"after job {r.job} ({r.item.name}): fds/threads/tasks {r.after.counts()} "
                             f"vs {result.warm.counts()} after the first job"))
    if result.after_shutdown.threads != result.cold.threads:
        problems.append(("leak", f"after shutdown {result.after_shutdown.threads} Python threads vs "
                         f"{result.cold.threads} before the queue"))
    if result.after_shutdown.fds != result.cold.fds:
        problems.append(("leak", f"after shutdown {result.after_shutdown.fds} fds vs {result.cold.fds} "
                         "before the queue"))
    if result.checkpoints_left:
        problems.append(("checkpoint-left", f"{result.checkpoints_left} checkpoint rows left in history.db"))
    if result.integrity != "ok":
        problems.append(("integrity", f"PRAGMA integrity_check: {result.integrity}"))
    growth, allowed = result.db_end - result.db_start, db_allowance(result.stored, len(result.rows))
    if growth > allowed:
        problems.append(("db-growth", f"history.db grew {growth} bytes for {result.stored} bytes stored "
                         f"(allowed {allowed})"))
    if result.tracebacks:
        problems.append(("traceback", f"{len(result.tracebacks)} log record(s) with a traceback: "
                         f"{result.tracebacks[:3]}"))
    if not good:
        problems.append(("empty", "no good recording ran"))
    return problems


def db_allowance(stored: int, jobs: int) -> int:
    """What history.db may grow by: the stored text twice over (B-tree pages are never full)
    plus a page per job and the two index pages; a checkpoint that is not freed, or a WAL
    that keeps growing, goes past it."""
    return 2 * stored + 4096 * (jobs + 4)


# --- the report -----------------------------------------------------------------------


HEADER = (f"{'job':>3}  {'file':<22} {'kind':<15} {'length':>8}  {'status':<8} {'wall s':>7} {'RSS MB':>7} "
          f"{'fds':>4} {'thr':>4} {'tasks':>5} {'db bytes':>9}  message")


def table(result: SoakResult) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    for r in result.rows:
        lines.append(row_line(r))
    return "\n".join(lines)


def row_line(r: Row) -> str:
    length = fmt_length(r.item.seconds) if r.item.kind == "good" else ""
    message = r.message if r.status != "done" else (r.message or f"{r.text_chars} chars")
    return (f"{r.job:3d}  {r.item.name[:22]:<22} {r.item.kind:<15} {length:>8}  {r.status:<8} {r.wall_s:7.1f} "
            f"{r.after.rss_mb:7.0f} {r.after.fds:4d} {r.after.threads:4d} {r.after.tasks:5d} {r.db_bytes:9d}  "
            f"{message[:90]}")


def summary(result: SoakResult) -> str:
    rows = result.rows
    good = [r for r in rows if r.item.kind == "good"]
    bad = [r for r in rows if r.item.kind != "good"]
    hours = result.transcribed_seconds / 3600
    growth = result.db_end - result.db_start
    second, last = good[1].after.rss_mb if len(good) > 1 else 0, rows[-1].after.rss_mb
    out = [
        f"jobs: {len(rows)} ({sum(r.status == 'done' for r in good)}/{len(good)} good done; bad: "
        + ", ".join(f"{r.item.kind}={r.status}" for r in bad) + ")",
        f"audio transcribed: {result.transcribed_seconds / 60:.1f} min in {sum(r.wall_s for r in good):.0f} s "
        f"of jobs ({result.transcribed_seconds / max(1e-9, sum(r.wall_s for r in good)):.1f}x real time); "
        f"soak wall {result.wall_s:.0f} s",
        f"RSS: {second:.0f} MB after the second recording, {last:.0f} MB after job {len(rows)} "
        f"({(last / second - 1) if second else 0:+.1%}); min/max after any job "
        f"{min(r.after.rss_mb for r in rows):.0f}/{max(r.after.rss_mb for r in rows):.0f} MB; "
        f"peak {result.peak_rss_mb:.0f} MB",
        f"fds/threads/tasks: cold {result.cold.counts()}, after job 1 {result.warm.counts()}, after every job "
        f"{'the same' if all(r.after.counts() == result.warm.counts() for r in rows) else 'DIFFERENT'}, "
        f"after shutdown {result.after_shutdown.counts()}",
        f"history.db+wal: {result.db_start} -> {result.db_end} bytes (+{growth}) for {result.stored} bytes "
        f"stored ({growth / max(1, result.stored):.2f}x); {growth / hours if hours else 0:,.0f} bytes per "
        f"transcribed hour; checkpoint rows left {result.checkpoints_left}; integrity {result.integrity}",
        f"tracebacks logged: {len(result.tracebacks)}",
    ]
    if result.problems:
        out.append("PROBLEMS:")
        out += [f"  [{key}] {text}" for key, text in result.problems]
    else:
        out.append("no problems")
    return "\n".join(out)


def to_json(result: SoakResult) -> dict:
    def sample_dict(s: Sample) -> dict:
        return {"rss_mb": round(s.rss_mb, 1), "fds": s.fds, "threads": s.threads, "tasks": s.tasks}

    return {
        "rows": [{"job": r.job, "file": r.item.name, "kind": r.item.kind, "seconds": r.item.seconds,
                  "status": r.status, "message": r.message, "warnings": list(r.warnings), "wall_s": round(r.wall_s, 2),
                  "text_chars": r.text_chars, "history_id": r.history_id, **sample_dict(r.after),
                  "db_bytes": r.db_bytes} for r in result.rows],
        "cold": sample_dict(result.cold), "warm": sample_dict(result.warm),
        "after_shutdown": sample_dict(result.after_shutdown),
        "db_start": result.db_start, "db_end": result.db_end, "stored": result.stored,
        "db_allowance": db_allowance(result.stored, len(result.rows)),
        "transcribed_seconds": result.transcribed_seconds, "checkpoints_left": result.checkpoints_left,
        "integrity": result.integrity, "tracebacks": result.tracebacks, "wall_s": round(result.wall_s, 1),
        "peak_rss_mb": round(result.peak_rss_mb, 1), "problems": [list(p) for p in result.problems],
    }


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default=DEFAULT_LENGTHS,
                        help=f"comma-separated recording lengths (default: {DEFAULT_LENGTHS}); "
                             f"a shorter set (68.5 min of audio, ~4 min on 2 CPU cores): {SHORT_LENGTHS}")
    parser.add_argument("--bad", default=",".join(BAD_KINDS), help="bad files put in between ('' for none)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--work", type=Path, default=None, help="folder for the recordings and history.db "
                        "(default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here (tests read it)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    from webui.offline import enforce_offline

    enforce_offline()
    from webui.modules.engines.base import EngineSettings
    from webui.modules.options import PipelineOptions

    lengths = [parse_length(x) for x in args.lengths.split(",") if x.strip()]
    bad = [k for k in args.bad.split(",") if k.strip()]
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="soak-")
    work = args.work or Path(tmp.name)
    try:
        items = build_items(work / "inputs", lengths, bad, log=lambda s: print(s, file=sys.stderr))
        print(HEADER, flush=True)
        result = run(items, work / "history.db", PipelineOptions(engine=EngineSettings(device=args.device)),
                     on_row=lambda r: print(row_line(r), flush=True))
    finally:
        if tmp is not None:
            tmp.cleanup()
    print()
    print(table(result))
    print()
    print(summary(result))
    if args.json:
        args.json.write_text(json.dumps(to_json(result), indent=1), encoding="utf-8")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
