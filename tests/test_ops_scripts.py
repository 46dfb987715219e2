"""The ops scripts in scripts/: each has --help and a dry run, and does its job end to end.

monitor_gpu.py against the running app (a forced threshold, so a machine without a GPU still
makes the call) and a stub that counts calls; archive_history.py on a live WAL database while
a thread keeps writing; preprocess.py on a real 2.5-minute recording; requirements.lock and
rollback.sh --dry-run on this very venv (nothing is reinstalled)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.test_api import ROOT, Server, free_port, start_server
from webui.modules.history import History
from webui.modules.transcript import Transcript

SCRIPTS = ROOT / "scripts"
SR = 16_000


def run(*argv: str, timeout: float = 120, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, *argv] if argv[0].endswith(".py") else ["bash", *argv]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environment.pop("WEBUI_AUTH", None)
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("script", ["monitor_gpu.py", "archive_history.py", "preprocess.py",
                                    "rollback.sh", "lock_requirements.sh"])
def test_every_script_has_help_and_a_dry_run(script: str) -> None:
    proc = run(str(SCRIPTS / script), "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "dry" in proc.stdout.lower() or script == "lock_requirements.sh", proc.stdout
    if script == "preprocess.py":
        assert "Batch tab" in proc.stdout


# --- monitor_gpu.py ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("monitor")
    logins = work / "logins"
    logins.write_text("# the server's own login file\nops:s3cret-pass\n")
    logins.chmod(0o600)
    server = start_server(work / "srv", "--auth-file", str(logins), "--admin", "ops")  # cleanup is the admin's
    yield server, logins
    server.stop()


def test_monitor_over_the_threshold_calls_deep_cleanup_and_logs_the_freed_bytes(app: tuple[Server, Path]) -> None:
    server, logins = app
    proc = run(str(SCRIPTS / "monitor_gpu.py"), "--once", "--url", server.url, "--auth-file", str(logins),
               "--threshold-bytes", "0", "--used-bytes", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    actions = [line for line in proc.stdout.splitlines() if "deep_cleanup:" in line]
    assert len(actions) == 1, proc.stdout  # one log line per action
    assert re.search(r"freed \d+ bytes", actions[0]), actions[0]


def test_monitor_under_the_threshold_does_nothing(app: tuple[Server, Path]) -> None:
    server, logins = app
    proc = run(str(SCRIPTS / "monitor_gpu.py"), "--once", "-v", "--url", server.url, "--auth-file", str(logins),
               "--threshold-gb", "1000000", "--used-bytes", str(10**9))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "below the threshold" in proc.stdout and "deep_cleanup:" not in proc.stdout, proc.stdout


def test_monitor_says_clearly_when_the_app_is_unreachable_or_wants_a_login(app: tuple[Server, Path]) -> None:
    server, _ = app
    closed = run(str(SCRIPTS / "monitor_gpu.py"), "--once", "--url", f"http://127.0.0.1:{free_port()}",
                 "--threshold-bytes", "0", "--used-bytes", "1")
    assert closed.returncode == 1 and "cannot reach the app" in closed.stderr, closed.stderr
    no_login = run(str(SCRIPTS / "monitor_gpu.py"), "--once", "--url", server.url,
                   "--threshold-bytes", "0", "--used-bytes", "1")
    assert no_login.returncode == 1 and "login" in no_login.stderr, no_login.stderr


class _StubApp(BaseHTTPRequestHandler):
    posts: list[str] = []

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._answer({"status": "ok", "device": "cuda:0"})

    def do_POST(self) -> None:  # noqa: N802
        type(self).posts.append(self.path)
        self._answer({"freed_bytes": 123456789, "before": {}, "after": {"nvml_used": 10**9}, "note": ""})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def stub():
    _StubApp.posts = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StubApp)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _StubApp.posts
    httpd.shutdown()
    httpd.server_close()


FAKE_NVML = """
class _Memory:
    total, used, free = 80 * 10**9, 60 * 10**9, 20 * 10**9

def nvmlInit(): pass
def nvmlDeviceGetHandleByIndex(index): return ("gpu", index)
def nvmlDeviceGetHandleByPciBusId(bus_id): return ("gpu", bus_id)
def nvmlDeviceGetName(handle): return "Fake GPU 80GB"
def nvmlDeviceGetMemoryInfo(handle): return _Memory()
"""


def test_monitor_loop_reads_nvml_and_cleans_once_per_cooldown_and_a_dry_run_never_calls(stub, tmp_path: Path) -> None:
    """The NVML path through webui.modules.gpu, with a stand-in pynvml (60 of 80 GB in use)."""
    url, posts = stub
    (tmp_path / "pynvml.py").write_text(FAKE_NVML)
    argv = [sys.executable, str(SCRIPTS / "monitor_gpu.py"), "--url", url, "--interval", "0.1", "--cooldown", "3600",
            "--threshold-percent", "70", "-v"]
    loop = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not posts:
        time.sleep(0.05)
    time.sleep(1.0)  # about ten more checks, all inside the cooldown
    loop.send_signal(signal.SIGINT)
    out = loop.communicate(timeout=20)[0]
    assert posts == ["/api/deep_cleanup"], out
    assert out.count("deep_cleanup:") == 1 and "freed 123456789 bytes" in out, out
    assert "Fake GPU 80GB" in out and "used 60.00 GB of 80.00 GB, threshold 56.00 GB" in out, out
    assert "cooldown" in out, out  # -v logs the checks that were held back

    dry = run(str(SCRIPTS / "monitor_gpu.py"), "--once", "--dry-run", "--url", url, "--threshold-bytes", "0",
              "--used-bytes", "5")
    assert dry.returncode == 0 and "would POST" in dry.stdout, dry.stdout + dry.stderr
    assert posts == ["/api/deep_cleanup"]  # still only the loop's one


def test_monitor_without_nvml_says_so_and_its_dry_run_shows_the_rule(stub) -> None:
    try:
        import pynvml

        pynvml.nvmlInit()
        pytest.skip("this machine has NVML")
    except Exception:
        pass
    url, posts = stub
    real = run(str(SCRIPTS / "monitor_gpu.py"), "--once", "--url", url)
    assert real.returncode == 3 and "NVML is not available" in real.stderr, real.stderr
    dry = run(str(SCRIPTS / "monitor_gpu.py"), "--once", "--dry-run", "--url", url, "--threshold-percent", "80")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "NVML is not available" in dry.stdout and "would POST" in dry.stdout and "80 %" in dry.stdout
    assert posts == []


# --- archive_history.py ------------------------------------------------------------------


def _transcript(text: str) -> Transcript:
    return Transcript.from_dict({"file": "x.wav", "duration": 12.5, "model": "m", "language": "en", "text": text,
                                 "text_itn": text.upper(), "segments": [{"start": 0.0, "end": 1.0, "text": text}]})


def _integrity(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def _ids(path: Path) -> set[int]:
    con = sqlite3.connect(path)
    try:
        return {row[0] for row in con.execute("SELECT id FROM jobs")}
    finally:
        con.close()


def test_archive_moves_old_finished_jobs_while_the_app_writes_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    history = History(db)
    old = datetime.now(timezone.utc) - timedelta(days=100)
    for i in range(60):
        job = history.create_job(f"old{i}.wav", f"/rec/old{i}.wav", "m", {"n": i}, created_at=old + timedelta(minutes=i))
        if i % 10 == 9:
            history.fail_job(job, "broken file")
        else:
            history.finish_job(job, _transcript(f"old words {i}"))
    queued = history.create_job("waiting.wav", "/rec/w.wav", "m", {}, created_at=old)
    running = history.create_job("running.wav", "/rec/r.wav", "m", {}, created_at=old)
    history.mark_running(running)
    history.begin_checkpoint(running, {"plan": [1, 2, 3]})
    history.add_checkpoint_window(running, {"index": 0, "results": ["a"]})
    for i in range(10):
        history.finish_job(history.create_job(f"new{i}.wav", "/rec/n.wav", "m", {}), _transcript(f"new {i}"))
    before = {r.id: r for r in history.search(include_archived=True, limit=10_000)}
    stale = tmp_path / "history_20000101.db"  # an archive from long ago, and a recent one
    History(stale)
    os.utime(stale, (time.time() - 400 * 86400,) * 2)
    recent = tmp_path / "history_20990101.db"
    History(recent)

    dry = run(str(SCRIPTS / "archive_history.py"), "--history", str(db), "--days", "30", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "60 finished job(s)" in dry.stdout and "would be deleted" in dry.stdout, dry.stdout
    assert history.count() == 72 and stale.exists() and len(list(tmp_path.glob("history_*.db"))) == 2

    written: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:  # the app, recording jobs as the script runs (some old enough to move)
        try:
            n = 0
            while not stop.is_set():
                created = old if n % 3 == 0 else None
                job = History(db).create_job(f"live{n}.wav", "/rec/l.wav", "m", {}, created_at=created)
                written.append(job)
                history.finish_job(job, _transcript(f"live {n}"))
                n += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        before_script = len(written)
        proc = run(str(SCRIPTS / "archive_history.py"), "--history", str(db), "--days", "30",
                   "--archive-retention-days", "365")
        after_script = len(written)
        assert after_script > before_script  # the app wrote while the script ran
        while len(written) < after_script + 10:  # and a while after it
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"moved \d+ finished job", proc.stdout) and "VACUUM" in proc.stdout, proc.stdout
    assert "deleted 1 archive" in proc.stdout and not stale.exists() and recent.exists()

    archive = tmp_path / f"history_{time.strftime('%Y%m%d')}.db"
    assert archive.exists(), list(tmp_path.iterdir())
    main_ids, archived_ids = _ids(db), _ids(archive)
    assert not main_ids & archived_ids
    assert main_ids | archived_ids == set(before) | set(written)  # nothing lost, nothing doubled
    assert len(main_ids) + len(archived_ids) == len(before) + len(written)
    assert {i for i, r in before.items() if r.file_name.startswith("old")} <= archived_ids
    assert int(re.search(r"moved (\d+)", proc.stdout).group(1)) == len(archived_ids)

    store = History(archive)
    for job_id, record in before.items():
        if job_id in archived_ids:
            assert store.get(job_id) == record  # readable through History, every field the same
    assert store.get(next(iter(archived_ids))).to_transcript().text.startswith("old words")
    assert history.get(queued).status == "queued" and history.get(running).status == "running"
    header, windows = history.checkpoint(running)
    assert header == {"plan": [1, 2, 3]} and windows == [{"index": 0, "results": ["a"]}]
    assert all(history.get(i) is not None for i in before if before[i].file_name.startswith("new"))
    assert _integrity(db) == "ok" and _integrity(archive) == "ok"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_archive_move_after_an_interrupted_one_neither_doubles_nor_loses(tmp_path: Path) -> None:
    """A crash between the two files' commits leaves a job in both: the next move only deletes
    it here. A job whose id the archive holds for another job gets a new id there."""
    db, archive = tmp_path / "history.db", tmp_path / "history_x.db"
    history = History(db)
    old = datetime.now(timezone.utc) - timedelta(days=10)
    first = [history.create_job(f"a{i}.wav", "/a", "m", {}, status="done", created_at=old) for i in range(3)]
    assert history.move_older_than(5, archive, dry_run=True) == 2  # the highest id stays: never reused
    history.create_job("today.wav", "/a", "m", {})
    assert history.move_older_than(5, archive, dry_run=True) == 3 and not archive.exists()
    assert history.move_older_than(5, archive) == 3
    assert history.move_older_than(5, archive) == 0
    with sqlite3.connect(db) as con:  # job a0 in both files; another job on a1's id
        con.execute("ATTACH DATABASE ? AS a", (str(archive),))
        con.execute("INSERT INTO jobs SELECT * FROM a.jobs WHERE id = ?", (first[0],))
        con.execute("INSERT INTO jobs (id, file_name, status, created_at) VALUES (?, 'other.wav', 'done', ?)",
                    (first[1], old.isoformat()))
    assert history.move_older_than(5, archive) == 2
    names = sorted(r.file_name for r in History(archive).search(limit=100))
    assert names == ["a0.wav", "a1.wav", "a2.wav", "other.wav"] and history.count() == 1
    with pytest.raises(ValueError):
        history.move_older_than(-1, archive)


def test_archive_dir_holds_the_archives_and_their_retention(tmp_path: Path) -> None:
    db, folder = tmp_path / "app" / "history.db", tmp_path / "kept"
    history = History(db)
    old = datetime.now(timezone.utc) - timedelta(days=40)
    for i in range(3):
        history.create_job(f"a{i}.wav", "/a", "m", {}, status="cancelled", created_at=old)
    history.create_job("today.wav", "/a", "m", {}, status="done")
    ancient = folder / "history_19990101.db"
    History(ancient)
    os.utime(ancient, (time.time() - 40 * 86400,) * 2)
    proc = run(str(SCRIPTS / "archive_history.py"), "--history", str(db), "--days", "30", "--archive-dir", str(folder),
               "--archive-retention-days", "30", "--no-vacuum")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not ancient.exists() and "VACUUM" not in proc.stdout
    assert History(folder / f"history_{time.strftime('%Y%m%d')}.db").count() == 3 and history.count() == 1
    assert sorted(p.name for p in db.parent.iterdir() if p.suffix == ".db") == ["history.db"]


# --- preprocess.py -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile as sf

    from tests.recordings import build

    path = tmp_path_factory.mktemp("rec") / "meeting.wav"
    build(path, 2.5, seed=5)
    with sf.SoundFile(str(path), "r+") as f:  # 5 samples more: a length that is no whole millisecond
        f.seek(0, sf.SEEK_END)
        f.write(np.full(5, 0.01, np.float32))
    return path


def _decoded(path: Path) -> np.ndarray:
    from webui.modules.audio import decode_into

    blocks: list[np.ndarray] = []
    decode_into(path, blocks.append)
    return np.concatenate(blocks)


def test_preprocess_writes_the_apps_plan_as_segments_that_rejoin_sample_for_sample(recording: Path,
                                                                                   tmp_path: Path) -> None:
    import soundfile as sf

    from webui.modules import pipeline
    from webui.modules.options import PipelineOptions
    from webui.modules.segment import limits_for

    no_settings = ["--settings", str(tmp_path / "none.json")]  # the defaults, whatever ./settings.json holds
    dry = run(str(SCRIPTS / "preprocess.py"), str(recording), "--out", str(tmp_path / "dry"), "--dry-run", *no_settings)
    assert dry.returncode == 0, dry.stderr
    assert "segments" in dry.stdout and not (tmp_path / "dry").exists()

    out = tmp_path / "segs"
    proc = run(str(SCRIPTS / "preprocess.py"), str(recording), "--out", str(out), *no_settings)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    decoded = _decoded(recording)
    assert decoded.size == 150 * SR + 5

    # The app's planner with the same settings (bundled Whisper: 30 s cap), not a copy of it.
    limits = limits_for(decoded.size / SR, "auto", 30.0)
    planned = pipeline.plan(recording, PipelineOptions(), 30.0)
    assert [m["start"] for m in manifest] == pytest.approx([s.start for s in planned.segments], abs=1 / SR)
    assert len(manifest) == len(planned.segments) >= 5
    assert manifest[0]["plan"]["max_seconds"] == limits.max_seconds == 30.0

    assert manifest[0]["start"] == 0.0 and manifest[-1]["end"] == decoded.size / SR  # absolute, to the last sample
    for a, b in zip(manifest, manifest[1:]):
        assert a["end"] == b["start"] and a["end_sample"] == b["start_sample"]  # contiguous
    pieces = []
    for m in manifest:
        assert m["source"] == "meeting.wav" and m["file"].endswith(".wav")
        info = sf.info(str(out / m["file"]))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        samples, _ = sf.read(str(out / m["file"]), dtype="int16")
        assert samples.size == m["end_sample"] - m["start_sample"]
        assert limits.merge_below <= samples.size / SR <= limits.max_seconds + 0.001
        pieces.append(samples)
    assert sum(p.size for p in pieces) == decoded.size  # the durations add up to the recording's
    assert np.array_equal(np.concatenate(pieces), decoded)  # sample for sample

    again = run(str(SCRIPTS / "preprocess.py"), str(recording), "--out", str(out), *no_settings)
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_preprocess_flac_with_a_longer_maximum(recording: Path, tmp_path: Path) -> None:
    import soundfile as sf

    out = tmp_path / "flac"
    proc = run(str(SCRIPTS / "preprocess.py"), str(recording), "--out", str(out), "--format", "flac",
               "--max-segment", "60", "--engine-cap", "0", "--settings", str(tmp_path / "none.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert manifest[0]["plan"]["max_seconds"] == 60.0 and manifest[0]["plan"]["engine_cap"] is None
    assert max(m["duration"] for m in manifest) > 30.0  # longer than the Whisper cap allows
    joined = np.concatenate([sf.read(str(out / m["file"]), dtype="int16")[0] for m in manifest])
    assert np.array_equal(joined, _decoded(recording))


# --- requirements.lock and rollback.sh ---------------------------------------------------


def _lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    entries: dict[str, tuple[str, list[str]]] = {}
    statements, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        current += " " + line.strip().rstrip("\\")
        if not line.rstrip().endswith("\\"):
            statements.append(current)
            current = ""
    assert not current.strip(), "the lock ends inside a continued line"
    for statement in statements:
        spec, *hashes = [part.strip() for part in statement.split("--hash=")]
        if not spec:
            continue
        req = Requirement(spec)
        pins = list(req.specifier)
        assert len(pins) == 1 and pins[0].operator == "==", spec
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), statement
        key = canonicalize_name(req.name)
        assert key not in entries, f"{req.name} twice"
        entries[key] = (pins[0].version, hashes)
    return entries


def test_lock_pins_every_requirement_with_a_hash() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = _lock_entries((ROOT / "requirements.lock").read_text())
    assert len(lock) > 50
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            req = Requirement(line)
            key = canonicalize_name(req.name)
            assert key in lock, f"{req.name} ({name}) is not in requirements.lock"
            version, hashes = lock[key]
            assert req.specifier.contains(version, prereleases=True), f"{req.name}: {version} vs {req.specifier}"
            assert hashes
    assert lock["torch"][0].startswith("2.13.0")  # the local CPU wheel, hashed as that file


def test_rollback_dry_run_finds_this_venv_is_the_lock_and_shows_what_would_change(tmp_path: Path) -> None:
    # --keep-extra: a package installed by hand beside the lock (not a requirement: the test
    # above checks those are all locked) is not what this checks; every locked version is.
    proc = run(str(SCRIPTS / "rollback.sh"), "--dry-run", "--keep-extra", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no change" in proc.stdout, (  # the lock is what .venv held when the tests last passed
        f"{proc.stdout}\n.venv differs from requirements.lock: if the change is wanted and the tests pass, "
        "refresh the lock with `bash scripts/lock_requirements.sh`")

    text = (ROOT / "requirements.lock").read_text()
    changed = re.sub(r"^tqdm==\S+", "tqdm==4.0.0", text, flags=re.M)
    changed = re.sub(r"^six==\S+ \\\n(    --hash=\S+ ?\\?\n)+", "", changed, flags=re.M)
    other = tmp_path / "older.lock"
    other.write_text(changed)
    proc = run(str(SCRIPTS / "rollback.sh"), "--dry-run", "--lock", str(other), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"change\s+tqdm \S+ -> 4\.0\.0", proc.stdout), proc.stdout
    assert re.search(r"remove\s+six ", proc.stdout), proc.stdout
    assert "no change" in run(str(SCRIPTS / "rollback.sh"), "--dry-run", "--keep-extra").stdout  # nothing touched
