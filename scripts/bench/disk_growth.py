"""Disk a server's jobs leave behind, without and with housekeeping.

The same N jobs (real speech from tests/data, 10-40 s each) run twice through a server context
(AppContext + its JobQueue, in-process, the bundled Whisper on the CPU), each job as the web
app does it: the recording lands in the upload folder under a content-hash folder (Gradio's
layout), the job runs, its four downloads (TXT/SRT/VTT/JSON) are written to the results folder
and copied into the upload cache (as Gradio does when it serves them). After each job the bytes
under upload_dir + results_dir + history.db (its -wal and -shm included) are measured.

  without: no housekeeping (what a server gets between two runs of its hourly timer, forever
           if the timer were missing)
  with:    ctx.housekeeping(daily=True) after every job, with a retention so short that
           everything older than the job just finished is pruned, and a small disk quota

    .venv/bin/python scripts/bench/disk_growth.py [--jobs 20] [--min-seconds 10] [--max-seconds 40]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("WEBUI_CACHE_DIR", str(ROOT / ".cache"))  # where the tests keep the bundled model

DAY = 86400.0


def make_clips(folder: Path, jobs: int, low: float, high: float) -> list[tuple[str, float]]:
    """`jobs` WAV recordings of real speech with short pauses, low..high seconds, all different."""
    import numpy as np

    from tests.recordings import build, load_clips
    from webui.modules.audio import probe

    speech = load_clips()
    rng = np.random.default_rng(7)
    out = []
    for i in range(jobs):
        path = folder / f"talk-{i + 1:02d}.wav"
        build(path, float(rng.uniform(low, high)) / 60, seed=100 + i, gap=(0.4, 1.5), clips=speech)
        out.append((str(path), probe(path).duration))
    return out


def cache_copy(upload_dir: Path, source: Path, name: str | None = None) -> Path:
    """A file as Gradio stores an upload (or a served download): <upload_dir>/<sha256>/<name>."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = upload_dir / digest / (name or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)  # a fresh mtime, as an upload has
    return target


def disk_bytes(ctx) -> tuple[int, int, int]:
    """(bytes of upload_dir + results_dir + History files, History's share, number of files)."""
    total = files = 0
    for folder in (Path(ctx.settings.upload_dir), ctx.results_dir):
        for path in folder.rglob("*"):
            info = path.lstat()
            if not path.is_dir():
                total += info.st_size
                files += 1
    db = Path(ctx.history.path)
    history = sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())
    return total + history, history, files


def run(clips: list[tuple[str, float]], work: Path, housekeeping: bool, quota_gb: float) -> list[tuple]:
    from webui.context import AppContext
    from webui.modules.exports import write_transcript_files

    work.mkdir(parents=True)
    settings = work / "settings.json"
    settings.write_text(json.dumps({"device": "cpu", "upload_dir": str(work / "uploads"),
                                    "results_dir": str(work / "results"), "history_path": str(work / "history.db"),
                                    "disk_quota_gb": quota_gb if housekeeping else 20.0}))
    ctx = AppContext.create(settings)
    upload_dir = Path(ctx.settings.upload_dir)
    rows = []
    try:
        for number, (clip, _) in enumerate(clips, 1):
            time.sleep(0.2)  # so everything of the job before is clearly older than this one's start
            started = time.time()
            upload = cache_copy(upload_dir, Path(clip))
            state = ctx.queue.wait(ctx.queue.submit(upload, ctx.job_options(), owner="bench"))
            job_seconds = time.time() - started
            if state.transcript is None:
                raise SystemExit(f"job {number} ended {state.status}: {state.error}")
            files = write_transcript_files(state.transcript, ctx.results_dir / state.id, state.file_name)
            for path in files.values():
                cache_copy(upload_dir, path)
            care = 0.0
            if housekeeping:
                # Everything from before this job started is past the retention, this job's files are not.
                keep_for = time.time() - started + 0.1
                ctx.settings = ctx.settings.with_changes(retention_days=keep_for / DAY)
                tick = time.perf_counter()
                ctx.housekeeping(True)
                care = time.perf_counter() - tick
            rows.append((number, *disk_bytes(ctx), job_seconds, care))
    finally:
        ctx.queue.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=40.0)
    parser.add_argument("--quota-mb", type=float, default=5.0, help="disk quota of the run with housekeeping")
    parser.add_argument("--one-run", choices=("without", "with"), help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    from webui.offline import enforce_offline

    enforce_offline()
    if args.one_run:  # one mode in a fresh process: its own worker thread and model, comparable timings
        clips = json.loads((args.work / "clips.json").read_text())
        rows = run(clips, args.work / args.one_run, args.one_run == "with", args.quota_mb / 1000)
        print(json.dumps(rows))
        return

    def child(mode: str) -> list[tuple]:
        proc = subprocess.run([sys.executable, __file__, "--one-run", mode, "--work", str(work),
                               "--quota-mb", str(args.quota_mb)], capture_output=True, text=True, cwd=ROOT,
                              check=False)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        return [tuple(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]

    with tempfile.TemporaryDirectory(prefix="disk-growth-") as tmp:
        work = Path(tmp)
        clips = make_clips(work, args.jobs, args.min_seconds, args.max_seconds)
        (work / "clips.json").write_text(json.dumps(clips))
        began = time.monotonic()
        without = child("without")
        middle = time.monotonic()
        with_ = child("with")
        ended = time.monotonic()

    audio = sum(d for _, d in clips)
    print(f"\n{len(clips)} jobs, {audio:.0f} s of audio ({min(d for _, d in clips):.0f}-{max(d for _, d in clips):.0f} s "
          f"each); wall time without housekeeping {middle - began:.0f} s, with {ended - middle:.0f} s. With: "
          f"ctx.housekeeping(True) after each job, retention = since that job started, quota {args.quota_mb:g} MB.\n")
    print(f"{'job':>4} {'audio s':>8} | {'without: bytes':>15} {'history.db':>11} {'files':>6} {'job s':>6} | "
          f"{'with: bytes':>12} {'history.db':>11} {'files':>6} {'job s':>6} {'care ms':>8}")
    for row, row_w, (_, seconds) in zip(without, with_, clips):
        number, total, history, files, job_s, _ = row
        _, total_w, history_w, files_w, job_w, care = row_w
        print(f"{number:4d} {seconds:8.1f} | {total:15,d} {history:11,d} {files:6d} {job_s:6.1f} | "
              f"{total_w:12,d} {history_w:11,d} {files_w:6d} {job_w:6.1f} {care * 1000:8.1f}")

    steps = max(1, len(clips) - 1)
    grow = (without[-1][1] - without[0][1]) / steps
    grow_db = (without[-1][2] - without[0][2]) / steps
    grow_db_w = (with_[-1][2] - with_[0][2]) / steps
    print(f"\nwithout housekeeping: +{grow:,.0f} bytes per job (history.db +{grow_db:,.0f}), "
          f"{without[-1][1]:,d} bytes after {len(clips)} jobs = {without[-1][1] / audio * 3600 / 1e6:,.1f} MB "
          "per hour of audio")
    print(f"with housekeeping:    {min(r[1] for r in with_):,d}-{max(r[1] for r in with_):,d} bytes after each job, "
          f"{max(r[3] for r in with_)} files at most; history.db +{grow_db_w:,.0f} bytes per job "
          "(retention prunes files; History keeps every job's row)")


if __name__ == "__main__":
    main()
