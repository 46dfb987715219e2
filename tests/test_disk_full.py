"""A full or read-only disk under the outputs, the CLI's checkpoint, the batch downloads and
history.db: a clear message, the transcript still somewhere, nothing stored before corrupted.

Every test runs twice: on a real tmpfs (`mount -t tmpfs -o size=8m`, filled with a filler file
or remounted read-only) where this process may mount one, and with the same failure injected
(open() for writing under the folder fails with ENOSPC after writing half, or with EROFS; History
raises sqlite3.OperationalError as SQLite does). Where mounting is refused the [tmpfs] variant
is skipped with the reason; its [injected] twin still runs (chmod cannot stand in: we run as root).
"""

from __future__ import annotations

import builtins
import csv
import errno
import functools
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import DATA
from webui.modules.engines.base import EngineOutput, EngineSettings, LocalText
from webui.modules.history import History
from webui.modules.job_state import DONE, JobState
from webui.modules.jobs import JobQueue
from webui.modules.options import PipelineOptions
from webui.modules.transcript import TimedText, Transcript, render, write

ROOT = Path(__file__).resolve().parent.parent
GOFORWARD = DATA / "goforward.wav"
KINDS = {"full": errno.ENOSPC, "read-only": errno.EROFS}
STRERROR = {kind: os.strerror(code) for kind, code in KINDS.items()}  # "No space left on device", ...
SQLITE_MESSAGE = {"full": "database or disk is full", "read-only": "attempt to write a readonly database"}
HISTORY_WRITES = ("create_job", "mark_running", "finish_job", "fail_job", "begin_checkpoint",
                  "add_checkpoint_window", "drop_checkpoint", "checkpoint")


# --- the broken disk ------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def mount_refusal() -> str | None:
    """None if this process can mount (and remount read-only) a tmpfs, else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root"
    if shutil.which("mount") is None:
        return "no mount command"
    import tempfile

    probe = Path(tempfile.mkdtemp(prefix="tmpfs-probe-"))
    try:
        steps = (["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                 ["mount", "-o", "remount,ro", str(probe)], ["umount", str(probe)])
        for argv in steps:
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode:
                if argv[0] == "mount" and "remount" in argv[2]:
                    subprocess.run(["umount", "-l", str(probe)], capture_output=True)
                return f"{' '.join(argv[:3])}: {proc.stderr.strip() or proc.returncode}"
        return None
    finally:
        probe.rmdir()


class _FullFile:
    """A file on a disk with no room left: half of the first write reaches it, then ENOSPC."""

    def __init__(self, real) -> None:
        self._real = real

    def write(self, data):
        self._real.write(data[: len(data) // 2])
        self._real.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._real.close()


class Faults:
    """Injected failures under `root`: open() for writing, mkdir, rename and unlink fail as they do
    on a full (ENOSPC: the file is created, its data is not) or read-only (EROFS) filesystem, and
    History's SQL raises what SQLite raises there. Off until `mode` is set."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.mode: str | None = None  # None | "full" | "read-only"

    def under(self, path) -> bool:
        try:
            return Path(os.fsdecode(os.fspath(path))).resolve().is_relative_to(self.root)
        except (TypeError, ValueError):
            return False

    def _deny(self, path) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def install(self, setattr_) -> None:
        real_open, real_replace, real_rename = builtins.open, os.replace, os.rename
        real_mkdir, real_unlink = os.mkdir, os.unlink
        faults = self

        def fake_open(file, mode="r", *args, **kwargs):
            writing = any(c in mode for c in "wax+")
            if faults.mode and writing and not isinstance(file, int) and faults.under(file):
                if faults.mode == "read-only":
                    faults._deny(file)
                return _FullFile(real_open(file, mode, *args, **kwargs))
            return real_open(file, mode, *args, **kwargs)

        def guard(real, deny_when_full=False):
            def fake(path, *args, **kwargs):
                if faults.mode and faults.under(path) and (faults.mode == "read-only" or deny_when_full):
                    if real is real_mkdir and os.path.exists(path):
                        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
                    faults._deny(path)
                return real(path, *args, **kwargs)
            return fake

        setattr_(builtins, "open", fake_open)
        setattr_(io, "open", fake_open)
        setattr_(os, "replace", guard(real_replace))
        setattr_(os, "rename", guard(real_rename))
        setattr_(os, "mkdir", guard(real_mkdir))
        setattr_(os, "unlink", guard(real_unlink))
        for name in HISTORY_WRITES:
            real_method = getattr(History, name)

            def fake_method(self, *args, _real=real_method, **kwargs):
                if faults.mode and faults.under(self.path):
                    raise sqlite3.OperationalError("disk I/O error" if _real.__name__ == "checkpoint"
                                                   else SQLITE_MESSAGE[faults.mode])
                return _real(self, *args, **kwargs)
            setattr_(History, name, fake_method)


class Disk:
    """A folder whose filesystem a test can fill up or make read-only, and restore."""

    def __init__(self, mechanism: str, path: Path, setattr_) -> None:
        self.mechanism, self.path = mechanism, path
        path.mkdir(parents=True, exist_ok=True)
        self.faults: Faults | None = None
        self._filler = path / ".filler"
        if mechanism == "tmpfs":
            self._sh("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path))
        else:
            self.faults = Faults(path)
            self.faults.install(setattr_)

    @staticmethod
    def _sh(*argv: str) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"

    def break_(self, kind: str) -> None:
        if self.faults is not None:
            self.faults.mode = kind
        elif kind == "full":
            fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                for block in (1 << 20, 4096):
                    try:
                        while True:
                            os.write(fd, b"\0" * block)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
            finally:
                os.close(fd)
        else:
            self._sh("mount", "-o", "remount,ro", str(self.path))
        self._check_broken(kind)

    def _check_broken(self, kind: str) -> None:
        """The failure is real: a new file cannot be written."""
        with pytest.raises(OSError) as caught:
            with open(self.path / ".probe", "w") as f:
                f.write("x" * 10_000)
                f.flush()
        assert caught.value.errno == KINDS[kind]
        if kind == "full":
            os.unlink(self.path / ".probe")

    def restore(self) -> None:
        if self.faults is not None:
            self.faults.mode = None
            return
        if self._filler.exists() and os.access(self.path, os.W_OK):
            try:
                self._filler.unlink()
                return
            except OSError:
                pass
        self._sh("mount", "-o", "remount,rw", str(self.path))
        self._filler.unlink(missing_ok=True)

    def close(self) -> None:
        if self.mechanism == "tmpfs":
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    def files(self, folder: Path) -> set[str]:
        return {p.name for p in folder.iterdir() if p.name not in (".filler", ".probe")}


@pytest.fixture(params=["tmpfs", "injected"])
def disk(request, tmp_path: Path, monkeypatch):
    if request.param == "tmpfs" and (reason := mount_refusal()):
        pytest.skip(f"cannot mount a tmpfs here ({reason}); the [injected] variant of this test covers it")
    d = Disk(request.param, tmp_path / "disk", monkeypatch.setattr)
    try:
        yield d
    finally:
        if d.faults is not None:
            d.faults.mode = None
        d.close()


def sample_transcript(name: str = "talk.wav") -> Transcript:
    pieces = [TimedText(0.0, 2.5, "one two three"), TimedText(3.0, 5.0, "go forward ten meters", "go forward 10 m")]
    return Transcript(file=name, duration=5.0, model="whisper-base", language="en", text="one two three go forward "
                      "ten meters", text_itn="one two three go forward 10 m", segments=pieces)


# --- transcript.write -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_write_leaves_no_truncated_file_and_the_older_file_intact(disk: Disk, kind: str) -> None:
    out = disk.path / "out"
    old = write(sample_transcript(), "txt", out, "talk")
    before = old.read_bytes()
    newer = Transcript(**{**sample_transcript().__dict__, "segments": [TimedText(0.0, 1.0, "x" * 50_000)]})
    disk.break_(kind)
    for fmt in ("txt", "srt"):  # over an older file, and a new one
        with pytest.raises(OSError) as caught:
            write(newer, fmt, out, "talk")
        assert caught.value.errno == KINDS[kind]
    assert old.read_bytes() == before
    assert disk.files(out) == {"talk.txt"}  # no talk.srt, no .talk.txt.part
    disk.restore()
    assert "x" * 50_000 in write(newer, "txt", out, "talk").read_text(encoding="utf-8")
    assert disk.files(out) == {"talk.txt"}


# --- the CLI --------------------------------------------------------------------------


@pytest.fixture
def cli_engine():
    """The model the CLI asks for (device cpu), loaded before a test points WEBUI_CACHE_DIR
    (the rescue folder's base) somewhere else."""
    from webui.modules.engines import get_engine

    return get_engine(EngineSettings(device="cpu"))


def run_cli(capsys, *args: str) -> tuple[int, str, list[str]]:
    from webui import cli

    rc = cli.main(["transcribe", *args, "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.splitlines()


def no_tracebacks(caplog) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


@pytest.mark.parametrize("kind", KINDS)
def test_cli_rescues_the_transcript_when_the_out_folder_is_full_or_read_only(
        disk: Disk, kind: str, tmp_path: Path, monkeypatch, capsys, caplog, cli_engine) -> None:
    out = disk.path / "out"
    out.mkdir()
    (out / "older.txt").write_text("an earlier run's transcript\n", encoding="utf-8")
    monkeypatch.setenv("WEBUI_CACHE_DIR", str(tmp_path / "cache"))
    rescued = tmp_path / "cache" / "rescued"
    disk.break_(kind)
    rc, stdout, err = run_cli(capsys, str(GOFORWARD), "--format", "all", "--out", str(out))
    assert rc == 1
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"error: {GOFORWARD}: could not write the transcript to {out} ({STRERROR[kind]}); "
                                f"saved it to {rescued / 'goforward.txt'}, goforward.srt, goforward.vtt, "
                                "goforward.json instead"), errors[0]
    assert [line for line in err if line.startswith("warning:")] == [
        f"warning: {GOFORWARD}: cannot write the checkpoint {out / 'goforward.checkpoint.jsonl'} "
        f"({STRERROR[kind]}); going on without a resume point"]
    assert len(err) == 2 and stdout == ""
    assert "go forward" in (rescued / "goforward.txt").read_text(encoding="utf-8").lower()
    assert json.loads((rescued / "goforward.json").read_text(encoding="utf-8"))["file"] == "goforward.wav"
    assert disk.files(out) == {"older.txt"}  # no half-written output, no empty checkpoint
    assert (out / "older.txt").read_text(encoding="utf-8") == "an earlier run's transcript\n"
    no_tracebacks(caplog)

    # A second rescue of the same name keeps the first.
    rc, _, err = run_cli(capsys, str(GOFORWARD), "--format", "txt", "--out", str(out))
    assert rc == 1 and f"saved it to {rescued / 'goforward-2.txt'} instead" in err[-1]
    assert (rescued / "goforward.txt").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_cli_prints_the_txt_when_the_rescue_folder_fails_too(
        disk: Disk, kind: str, monkeypatch, capsys, caplog, cli_engine) -> None:
    out = disk.path / "out"
    out.mkdir()
    monkeypatch.setenv("WEBUI_CACHE_DIR", str(disk.path / "cache"))
    disk.break_(kind)
    rc, stdout, err = run_cli(capsys, str(GOFORWARD), "--format", "srt", "--out", str(out))
    assert rc == 1
    assert stdout.startswith("[00:00:0") and "go forward" in stdout.lower()  # the TXT rendering
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith("its TXT is printed on stdout above"), err
    assert f"could not write the transcript to {out} ({STRERROR[kind]}) nor to {disk.path / 'cache' / 'rescued'}" \
        in errors[0]
    no_tracebacks(caplog)


def test_cli_disk_full_after_the_checkpoint_keeps_it_and_a_rerun_writes_without_transcribing(
        disk: Disk, tmp_path: Path, monkeypatch, capsys, caplog, cli_engine) -> None:
    from webui import cli

    out = disk.path / "out"
    monkeypatch.setenv("WEBUI_CACHE_DIR", str(tmp_path / "cache"))
    real_write, calls = cli.write, []

    def fill_then_write(*args):
        if not calls:  # every window is checkpointed; the disk fills just before the outputs
            calls.append(1)
            disk.break_("full")
        return real_write(*args)

    monkeypatch.setattr(cli, "write", fill_then_write)
    rc, _, err = run_cli(capsys, str(GOFORWARD), "--format", "txt", "--out", str(out))
    sidecar = out / "goforward.checkpoint.jsonl"
    assert rc == 1 and len(err) == 1, err
    assert err[0].endswith(f"; the checkpoint {sidecar} is kept: once {out} takes files again, run the same "
                           "command to write the outputs there without transcribing again"), err[0]
    rescued = (tmp_path / "cache" / "rescued" / "goforward.txt").read_text(encoding="utf-8")
    assert disk.files(out) == {"goforward.checkpoint.jsonl"}

    disk.restore()
    monkeypatch.setattr(cli_engine, "transcribe_batch", lambda *a, **k: pytest.fail("transcribed again"))
    rc, stdout, err = run_cli(capsys, str(GOFORWARD), "--format", "txt", "--out", str(out))
    assert rc == 0, err
    assert err[0].startswith(f"resuming {GOFORWARD}: 1 of 1 windows done")
    assert stdout.strip() == str(out / "goforward.txt")
    assert (out / "goforward.txt").read_text(encoding="utf-8") == rescued
    assert disk.files(out) == {"goforward.txt"}  # the checkpoint is gone once the outputs are written
    no_tracebacks(caplog)


def child_main(spec: dict) -> int:
    """The CLI in a fresh process (see the next test), with the failure injected when asked."""
    from webui.modules.engines import get_engine

    if spec["mechanism"] == "injected":
        faults = Faults(Path(spec["root"]))
        faults.install(setattr)
        faults.mode = spec["kind"]
    get_engine(EngineSettings(device="cpu"))  # from the model cache, before the rescue folder moves
    os.environ["WEBUI_CACHE_DIR"] = spec["cache"]
    from webui import cli

    return cli.main(spec["argv"])


def test_cli_in_a_fresh_process_says_it_in_one_line_without_a_traceback(disk: Disk, tmp_path: Path) -> None:
    """Logging unconfigured, as for a user: any log.exception would print its traceback here."""
    out = disk.path / "out"
    out.mkdir()
    if disk.mechanism == "tmpfs":
        disk.break_("read-only")
    spec = {"mechanism": disk.mechanism, "kind": "read-only", "root": str(disk.path), "cache": str(tmp_path / "cache"),
            "argv": ["transcribe", str(GOFORWARD), str(DATA / "missing.wav"), "--out", str(out), "--device", "cpu",
                     "--quiet"]}
    proc = subprocess.run([sys.executable, "-c", "import json, sys; from tests.test_disk_full import child_main; "
                           "sys.exit(child_main(json.loads(sys.argv[1])))", json.dumps(spec)],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 3, lines  # the checkpoint warning and one error line per file
    assert lines[0].startswith("warning: ") and "Read-only file system" in lines[0]
    assert lines[1].startswith(f"error: {GOFORWARD}: could not write the transcript to {out} (Read-only file system)")
    assert lines[2] == f"error: {DATA / 'missing.wav'}: file not found"
    assert (tmp_path / "cache" / "rescued" / "goforward.txt").exists()


def test_rescue_folder_follows_the_cache_settings(monkeypatch, tmp_path: Path) -> None:
    from webui.cli import rescue_dir

    monkeypatch.setenv("WEBUI_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert rescue_dir() == tmp_path / "a" / "rescued"
    monkeypatch.delenv("WEBUI_CACHE_DIR")
    assert rescue_dir() == tmp_path / "b" / "longform-asr" / "rescued"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert rescue_dir() == tmp_path / "home" / ".cache" / "longform-asr" / "rescued"


# --- the job queue and History --------------------------------------------------------


class GatedEngine:
    """Answers every input with one line, holding the first batch until `gate` is set."""

    name = "gated"
    device = "cpu"
    max_input_seconds = 30.0

    def __init__(self) -> None:
        self.gate, self.started = threading.Event(), threading.Event()

    def batch_limit(self, padded_seconds: float) -> int:
        return 1

    def transcribe_batch(self, audios, language: str = "auto") -> list[EngineOutput]:
        self.started.set()
        assert self.gate.wait(30), "test gate never opened"
        return [EngineOutput((LocalText(0.0, a.size / 16000, "words words words"),), "en") for a in audios]

    def release(self) -> None:
        pass

    def unload(self) -> None:
        pass


OPTIONS = PipelineOptions(engine=EngineSettings(device="cpu"), itn=False, retry_tail_seconds=0.0)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return con.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.parametrize("kind", KINDS)
def test_history_on_a_broken_disk_job_still_done_with_a_warning_and_old_rows_intact(disk: Disk, kind: str) -> None:
    db = disk.path / "history.db"
    history = History(db)
    engine = GatedEngine()
    queue = JobQueue(history, engine_factory=lambda settings: engine)
    try:
        engine.gate.set()
        first = queue.wait(queue.submit(GOFORWARD, OPTIONS), timeout=60)
        assert first.status == DONE and first.warnings == ()
        stored = history.get(first.history_id)
        engine.gate.clear()
        engine.started.clear()
        second_id = queue.submit(GOFORWARD, OPTIONS)
        assert engine.started.wait(30)  # running: created, marked running, checkpoint begun
        disk.break_(kind)
        engine.gate.set()
        second = queue.wait(second_id, timeout=60)
    finally:
        engine.gate.set()
        queue.shutdown()
    assert second.status == DONE and second.error == ""
    assert second.transcript is not None and "words words words" in second.transcript.text
    assert second.warnings == ("History could not be written (see the server log); the transcript is only on this "
                               "page: download it now.",)
    disk.restore()
    assert integrity(db) == "ok"
    reopened = History(db)
    assert reopened.get(first.history_id) == stored  # the row written before is untouched
    left = reopened.get(second.history_id)
    assert left.status == "running" and left.text == ""  # still unfinished: a restart resumes it
    assert reopened.count() == 2


@pytest.mark.parametrize("kind", KINDS)
def test_history_broken_at_submit_still_warns(disk: Disk, kind: str) -> None:
    db = disk.path / "history.db"
    history = History(db)
    engine = GatedEngine()
    engine.gate.set()
    queue = JobQueue(history, engine_factory=lambda settings: engine)
    try:
        disk.break_(kind)
        state = queue.wait(queue.submit(GOFORWARD, OPTIONS), timeout=60)
    finally:
        queue.shutdown()
    assert state.status == DONE and state.transcript is not None
    assert any("History could not be written" in w for w in state.warnings), state.warnings


# --- batch downloads ------------------------------------------------------------------


def done_state(n: int, name: str) -> JobState:
    t = sample_transcript(name)
    return JobState(id=f"{n}-x", file_name=name, path=f"/in/{name}", owner="", group="g", status=DONE, position=0,
                    ahead=0, stage=DONE, percent=100.0, eta_seconds=None, message="done", duration=5.0,
                    segments=tuple(t.segments), segments_done=1, segments_total=1, transcript=t, error="",
                    history_id=n, model="whisper-base", created_at=time.time(), started_at=time.time() - 3,
                    finished_at=time.time())


@pytest.mark.parametrize("kind", KINDS)
def test_batch_downloads_on_a_broken_disk_are_all_or_nothing_with_a_clear_error(disk: Disk, kind: str) -> None:
    from webui.modules.exports import ExportError, write_batch_outputs

    out = disk.path / "batch"
    earlier = write_batch_outputs([done_state(1, "a.wav")], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    states = [done_state(1, "a.wav"), done_state(2, "b.wav")]
    disk.break_(kind)
    with pytest.raises(ExportError) as caught:
        write_batch_outputs(states, out, extra_rows=[{"file": "bad.wav", "error": "empty"}])
    assert caught.value.errno == KINDS[kind] and isinstance(caught.value, OSError)
    assert str(caught.value) == (f"Could not save the batch summary and transcripts in {out}: {STRERROR[kind]}. "
                                 "Free some space (or make the folder writable) and try again.")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in before} == before
    assert disk.files(out) == set(before)  # no .part, no half-written zip
    with pytest.raises(ExportError) as caught:
        write_batch_outputs(states, disk.path / "new-batch")
    assert caught.value.errno == KINDS[kind]
    assert not (disk.path / "new-batch").exists() or disk.files(disk.path / "new-batch") == set()
    disk.restore()
    again = write_batch_outputs(states, out, extra_rows=[{"file": "bad.wav", "error": "empty"}])
    assert [r["file"] for r in csv.DictReader(again["csv"].open(encoding="utf-8"))] == ["a.wav", "b.wav", "bad.wav"]
    assert set(earlier) == set(again)


@pytest.mark.parametrize("kind", KINDS)
def test_transcript_downloads_on_a_broken_disk_raise_a_clear_error(disk: Disk, kind: str) -> None:
    from webui.modules.exports import ExportError, write_transcript_files

    out = disk.path / "job-1"
    disk.break_(kind)
    with pytest.raises(ExportError) as caught:
        write_transcript_files(sample_transcript(), out, "talk.wav")
    assert caught.value.errno == KINDS[kind]
    assert str(caught.value) == (f"Could not save the talk.wav downloads in {out}: {STRERROR[kind]}. "
                                 "Free some space (or make the folder writable) and try again.")
    assert not out.exists() or disk.files(out) == set()
    disk.restore()
    files = write_transcript_files(sample_transcript(), out, "talk.wav")
    assert files["txt"].read_text(encoding="utf-8") == render(sample_transcript(), "txt")
