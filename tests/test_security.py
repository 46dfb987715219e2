"""Attacks on what a web visitor can send, each refused where the product decides it:
paths and protocols given to ffmpeg, symlinks out of an allowed root, another user's History,
the operator's settings, limits, and retention that keeps the disk bounded."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import DATA
from webui.context import LOCAL, AppContext, Visitor
from webui.modules import housekeeping
from webui.modules.audio import InputError, list_media, probe
from webui.modules.history import History
from webui.modules.jobs import JobQueue, Limits, LimitError
from webui.modules.models import offered_models, pick
from webui.modules.settings import AppSettings


@pytest.fixture
def listener():
    """A loopback TCP server that counts connections: proof that nothing was fetched."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    hits: list[bytes] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            hits.append(conn.recv(200))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1], hits
    stop.set()
    thread.join(2)
    srv.close()


@pytest.mark.parametrize("name", ["http://127.0.0.1:{port}/a.wav", "concat:{data}/jfk.flac|{data}/jfk.flac",
                                  "file:/etc/passwd", "tcp://127.0.0.1:{port}", "-rf.wav", "subfile,,start,0,end,0,,:/etc/passwd"])
def test_protocol_and_option_names_are_plain_missing_files(tmp_path, monkeypatch, listener, name):
    port, hits = listener
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="file not found"):
        probe(name.format(port=port, data=DATA))
    time.sleep(0.3)
    assert hits == []


def test_a_playlist_cannot_make_ffmpeg_fetch_urls(tmp_path, listener):
    port, hits = listener
    playlist = tmp_path / "talk.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:{port}/x.wav\n"
                        "#EXT-X-ENDLIST\n")
    ffconcat = tmp_path / "list.ffconcat"
    ffconcat.write_text(f"ffconcat version 1.0\nfile http://127.0.0.1:{port}/y.wav\nfile /etc/passwd\n")
    for crafted in (playlist, ffconcat):
        with pytest.raises(InputError):
            probe(crafted)
    time.sleep(0.3)
    assert hits == []


def test_symlinks_do_not_escape_an_allowed_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.wav").write_bytes((DATA / "english.wav").read_bytes())
    (root / "talk.wav").write_bytes((DATA / "english.wav").read_bytes())
    (root / "link.wav").symlink_to(outside / "secret.wav")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    settings = AppSettings(batch_roots=(str(root),), upload_dir=str(tmp_path / "uploads"))
    assert [p.name for p in list_media(settings.check_batch_folder(str(root)))] == ["talk.wav"]
    with pytest.raises(ValueError, match="not under an allowed folder"):
        settings.check_batch_folder(str(root / "escape"))
    with pytest.raises(ValueError, match="not under an allowed folder"):
        settings.check_batch_folder(str(root / ".." / "outside"))


def test_models_come_from_the_list_only(tmp_path):
    models = tmp_path / "models"
    (models / "my-sensevoice").mkdir(parents=True)
    (models / "my-sensevoice" / "config.yaml").write_text("model: SenseVoiceSmall\n")
    (models / "not-a-model").mkdir()
    choices = offered_models("", models, ["FunAudioLLM/SenseVoiceSmall"])
    assert [c.name for c in choices] == ["whisper-base", "my-sensevoice", "FunAudioLLM/SenseVoiceSmall"]
    assert pick("", choices) == "" and pick("my-sensevoice", choices) == str((models / "my-sensevoice").resolve())
    for attack in ("/etc", str(models / "not-a-model"), "../models/my-sensevoice", "org/unlisted", str(models)):
        with pytest.raises(ValueError, match="not offered on this server"):
            pick(attack, choices)


def make_ctx(tmp_path, **access) -> AppContext:
    settings = tmp_path / "settings.json"
    return AppContext.create(settings, str(tmp_path / "history.db"), **access)


def test_only_an_admin_changes_settings_and_a_bad_history_path_keeps_the_old_one(tmp_path):
    ctx = make_ctx(tmp_path, logins=True, admins=frozenset({"ann"}))
    try:
        bob, ann = Visitor("bob", False), Visitor("ann", True)
        with pytest.raises(PermissionError):
            ctx.update(ctx.settings.with_changes(batch_roots=("/",)), bob)
        assert ctx.settings.batch_roots == ()
        folder = tmp_path / "a-folder"
        folder.mkdir()
        old = ctx.history.path
        with pytest.raises(ValueError, match="cannot be used"):
            ctx.update(ctx.settings.with_changes(history_path=str(folder)), ann)
        assert ctx.history.path == old and ctx.settings.history_path == str(old)
        ctx.history.create_job("still.wav", "", "m", {})  # History still works
        assert ctx.history.count() == 1
        assert "Saved" in ctx.update(ctx.settings.with_changes(max_batch_files=5), ann)
    finally:
        ctx.queue.shutdown()


def test_without_logins_the_local_user_is_admin_only_on_loopback(tmp_path):
    local = make_ctx(tmp_path / "a", local_admin=True)
    exposed = make_ctx(tmp_path / "b", local_admin=False)
    try:
        assert local.visitor(None) == Visitor(LOCAL, True)
        assert exposed.visitor(None) == Visitor(LOCAL, False)
        with pytest.raises(PermissionError):
            exposed.update(exposed.settings, exposed.visitor(None))
    finally:
        local.queue.shutdown()
        exposed.queue.shutdown()


def test_each_user_sees_and_deletes_only_their_own_history(tmp_path):
    history = History(tmp_path / "h.db")
    ann = history.create_job("ann.wav", "", "m", {}, owner="ann")
    bob = history.create_job("bob.wav", "", "m", {}, owner="bob", status="done")  # finished: deletable
    assert [r.file_name for r in history.search(owner="ann")] == ["ann.wav"]
    assert history.get(bob, owner="ann") is None and history.get(ann, owner="ann").owner == "ann"
    assert history.delete(bob, owner="ann") is False and history.get(bob) is not None
    assert history.delete(bob, owner="bob") is True
    assert len(history.search()) == 1  # an admin (owner=None) sees all


def test_limits_refuse_with_one_clear_line():
    from tests.fakes import EchoEngine

    gate = threading.Event()
    queue = JobQueue(None, engine_factory=lambda s: (gate.wait(30), EchoEngine())[1])
    try:
        queue.limits = Limits(max_audio_seconds=5.0, max_jobs_per_owner=1)
        with pytest.raises(LimitError, match=r"jfk.flac is 0.0 hours long; this server takes recordings of up to"):
            queue.submit(DATA / "jfk.flac", owner="ann")  # 11 s > 5 s
        queue.limits = Limits(max_audio_seconds=60.0, max_jobs_per_owner=1)
        queue.submit(DATA / "english.wav", owner="ann")  # held at the model load: running
        with pytest.raises(LimitError, match="already have 1 jobs waiting or running"):
            queue.submit(DATA / "english.wav", owner="ann")
        queue.submit(DATA / "english.wav", owner="bob")  # another user is not affected
    finally:
        gate.set()
        queue.shutdown()


def test_retention_and_quota_keep_the_disk_bounded_but_never_an_unfinished_job(tmp_path):
    uploads, results = tmp_path / "uploads", tmp_path / "results"
    now = time.time()

    def file(path: Path, size: int, age_days: float) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
        return path

    old = file(uploads / "a" / "old.wav", 100, 10)
    running = file(uploads / "b" / "running.wav", 100, 10)
    recent = [file(results / f"r{i}.txt", 100, i * 0.1) for i in range(5)]
    outside = file(tmp_path / "elsewhere" / "keep.txt", 10, 30)
    (results / "link").symlink_to(outside)
    os.utime(results / "link", (now - 40 * 86400, now - 40 * 86400), follow_symlinks=False)
    report = housekeeping.prune_files([uploads, results], 7 * 86400, quota_bytes=350, keep={running.resolve()},
                                      now=now)
    assert not old.exists() and not (uploads / "a").exists()  # too old, and its empty folder
    assert running.exists()  # an unfinished job's upload is kept whatever its age
    assert outside.exists() and not (results / "link").is_symlink()  # the link went, not its target
    assert [p.exists() for p in recent] == [True, True, False, False, False]  # the oldest went first
    assert report.kept_bytes <= 350


def test_old_history_archives_are_deleted(tmp_path):
    db = tmp_path / "history.db"
    History(db)
    old, new = tmp_path / "history_20200101.db", tmp_path / "history_20991231.db"
    old.write_bytes(b"")
    new.write_bytes(b"")
    os.utime(old, (time.time() - 8 * 86400,) * 2)
    assert housekeeping.delete_old_archives(db, 7) == 1
    assert not old.exists() and new.exists() and db.exists()


def test_logins_come_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from webui.server import main, read_logins

    auth = tmp_path / "logins"
    auth.write_text("# team\nann:s3cret\nbob:pa:ss\n")
    assert read_logins(auth, None) == [("ann", "s3cret"), ("bob", "pa:ss")]
    monkeypatch.setenv("WEBUI_AUTH", "carl:x1, dana:y2")
    assert read_logins(None, None) == [("carl", "x1"), ("dana", "y2")]
    assert main(["--auth-file", str(auth), "--admin", "zed"]) == 2  # an admin must be a login
