"""Corrections kept as revisions: what a page may save (checked), what is stored (History, never
over the model's output), what the downloads then hold, and the player's copy of the audio."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import DATA
from webui.modules import history_db, proxy_audio, revisions
from webui.modules.exports import render_file, write_batch_outputs, write_transcript_files
from webui.modules.history import History, RevisionConflict
from webui.modules.revisions import EditError
from webui.modules.transcript import TimedText, Transcript

MODEL = Transcript(file="talk.wav", duration=30.0, model="whisper-base", language="en",
                   text="hello there general kenobi", text_itn="Hello there. General Kenobi.",
                   segments=[TimedText(0.0, 2.0, "hello there", "Hello there."),
                             TimedText(2.5, 5.0, "general kenobi", "General Kenobi.")])


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "history.db")


def finished_job(history: History, owner: str = "ann") -> int:
    job = history.create_job("talk.wav", "/nowhere/talk.wav", "whisper-base", {}, owner=owner)
    history.mark_running(job)
    history.finish_job(job, MODEL)
    return job


def lines(*rows) -> str:
    return json.dumps([{"start": s, "end": e, "text": t, **({"speaker": p} if p else {})} for s, e, t, p in rows])


def test_the_revisions_table_is_the_sixth_migration() -> None:
    assert "CREATE TABLE revisions" in history_db.MIGRATIONS[5][0]
    assert history_db.SCHEMA_VERSION >= 6


@pytest.mark.parametrize("payload, message", [
    ("not json", "not JSON"),
    ("{}", "a list of lines"),
    ("[]", "at least one line"),
    (lines((0.0, 2.0, "ok", None), (1.0, 3.0, "earlier", None))[:-1] + ', 5]', "is not a line"),
    (lines((-1.0, 2.0, "before zero", None)), "outside the recording"),
    (lines((0.0, 99.0, "past the end", None)), "outside the recording"),
    (lines((3.0, 2.0, "backwards", None)), "ends (2.00 s) before it starts"),
    (lines((2.0, 3.0, "b", None), (1.0, 4.0, "a", None)), "must stay in time order"),
    (lines((0.0, 2.0, "   ", None)), "has no text"),
    (lines((0.0, 2.0, "x" * 2001, None)), "at most 2,000"),
    (lines((0.0, 2.0, "ok", "n" * 41)), "speaker is 41 characters"),
    (json.dumps([{"start": "0", "end": 1, "text": "a"}]), "start time is not a number"),
    (json.dumps([{"start": float("nan"), "end": 1, "text": "a"}]), "not JSON"),  # NaN is not JSON for json.loads? it is
    (json.dumps([{"start": 0, "end": 1, "text": ["a"]}]), "text must be text"),
])
def test_every_edit_is_checked_with_a_clear_message(payload: str, message: str) -> None:
    if "NaN" in payload:  # Python's json reads NaN: it must still be refused, as not a number
        message = "not a number"
    with pytest.raises(EditError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        revisions.validate(payload, 30.0)


def test_markup_is_kept_as_text_and_control_characters_go() -> None:
    [line] = revisions.validate(lines((0.0, 2.0, '<img src=x onerror="alert(1)">\x00 & co', "<b>Ann</b>")), 30.0)
    assert line.text == '<img src=x onerror="alert(1)">  & co'.replace("  ", " ") and line.speaker == "<b>Ann</b>"
    from webui.ui.transcript_view import Shown, view_html

    page = view_html(Shown([line], editable=True))
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "<b>Ann" not in page and "&lt;b&gt;Ann&lt;/b&gt;" in page
    vtt = render_file(revisions.to_transcript(MODEL, [line]), "vtt")
    assert "<img" not in vtt and "&lt;img" in vtt


def test_revisions_never_touch_the_models_output_and_a_restore_is_a_new_revision(history: History) -> None:
    job = finished_job(history)
    record = history.get(job)
    assert revisions.latest(history, record)[1] == 0
    edited = revisions.validate(lines((0.0, 2.0, "Hello there!", "Obi-Wan"), (2.5, 5.0, "General Kenobi.", "Grievous")),
                                30.0)
    assert history.add_revision(job, [l.to_dict() for l in edited], "ann", "1 line changed", base=0) == 1
    with pytest.raises(RevisionConflict) as conflict:  # a second page still on revision 0
        history.add_revision(job, [l.to_dict() for l in edited], "ann", base=0)
    assert conflict.value.latest == 1
    renamed = revisions.rename_speaker(edited, "Grievous", "General Grievous")
    assert history.add_revision(job, [l.to_dict() for l in renamed], "ann", base=1) == 2
    transcript, number = revisions.latest(history, history.get(job))
    assert number == 2 and [s.display_text for s in transcript.segments] == ["Hello there!", "General Kenobi."]
    assert [s.speaker for s in transcript.segments] == ["Obi-Wan", "General Grievous"]
    assert transcript.segments[1].text == "general kenobi"  # an unchanged line keeps the model's raw text
    assert history.get(job).text_itn == MODEL.text_itn  # the model's output, as it was
    # Restoring revision 0 saves it as revision 3; the corrections stay in the list.
    assert history.add_revision(job, [l.to_dict() for l in revisions.lines_of(MODEL)], "ann", "restored revision 0") == 3
    assert [r.number for r in history.revisions(job)] == [1, 2, 3]
    transcript, number = revisions.latest(history, history.get(job))
    assert number == 3 and transcript.text_itn == MODEL.text_itn and transcript.segments[0].speaker is None
    assert history.revision(job, 1)[1][0]["text"] == "Hello there!"


def test_a_running_job_cannot_be_revised_and_deleting_a_job_drops_its_revisions(history: History) -> None:
    running = history.create_job("live.wav", "", "m", {})
    history.mark_running(running)
    assert history.add_revision(running, [{"start": 0, "end": 1, "text": "x"}]) is None
    job = finished_job(history)
    history.add_revision(job, [{"start": 0, "end": 1, "text": "x"}])
    assert history.delete(job)
    with sqlite3.connect(history.path) as con:
        assert con.execute("SELECT COUNT(*) FROM revisions").fetchone()[0] == 0


def test_downloads_carry_the_revision_and_the_speakers(history: History, tmp_path: Path) -> None:
    job = finished_job(history)
    history.add_revision(job, [{"start": 0.0, "end": 2.0, "text": "Hello there!", "speaker": "Ben"},
                               {"start": 2.5, "end": 5.0, "text": "General Kenobi."}])
    transcript, number = revisions.latest(history, history.get(job))
    files = write_transcript_files(transcript, tmp_path / "dl", "talk.wav", revision=number)
    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert data["revision"] == 1 and data["segments"][0]["speaker"] == "Ben" and "speaker" not in data["segments"][1]
    assert files["txt"].read_text(encoding="utf-8").splitlines()[0].endswith("] Ben: Hello there!")
    assert "Ben: Hello there!" in files["srt"].read_text(encoding="utf-8")
    assert "General Kenobi." in files["vtt"].read_text(encoding="utf-8")


def test_archiving_moves_a_jobs_revisions_with_it(history: History, tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    old = history.create_job("old.wav", "", "m", {}, created_at=datetime.now(timezone.utc) - timedelta(days=40))
    history.mark_running(old)
    history.finish_job(old, MODEL)
    history.add_revision(old, [{"start": 0, "end": 1, "text": "kept"}])
    finished_job(history)  # the newest job always stays
    assert history.move_older_than(30, tmp_path / "archive.db") == 1
    archive = History(tmp_path / "archive.db")
    assert archive.revision(old) == (1, [{"start": 0, "end": 1, "text": "kept"}])


def test_the_zip_holds_both_summaries(tmp_path: Path) -> None:
    import zipfile

    from tests.test_ui_common import state

    done = state(status="done", stage="done", transcript=MODEL, segments=tuple(MODEL.segments), percent=100.0)
    out = write_batch_outputs([done], tmp_path)
    names = set(zipfile.ZipFile(out["zip"]).namelist())
    assert {"summary.csv", "summary.json", "talk.txt", "talk.json"} <= names
    summary = json.loads(zipfile.ZipFile(out["zip"]).read("summary.json"))
    assert summary[0]["file"] == "talk.wav" and summary[0]["status"] == "done"


# --- the player's copy ------------------------------------------------------------------------

def test_the_player_copy_is_small_opus_and_made_once(tmp_path: Path) -> None:
    source = DATA / "two_cities.wav"  # 44 s of 16-kHz PCM: 1.4 MB
    target = tmp_path / proxy_audio.folder_token(7, "2025-01-01T00:00:00", str(source)) / proxy_audio.FILE_NAME
    maker = proxy_audio.ProxyMaker()
    first = maker.request(source, target)
    assert first.state == "pending" and "Preparing" in first.message
    maker.wait(target, 60)
    ready = maker.request(source, target)
    assert ready.state == "ready" and ready.path == target
    size = target.stat().st_size
    assert 100_000 < size < 250_000  # ~32 kbit/s: a 3-hour recording is ~45 MB, not gigabytes
    assert target.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML: WebM
    mtime = target.stat().st_mtime_ns
    assert maker.request(source, target).state == "ready" and target.stat().st_mtime_ns == mtime  # not made again
    assert proxy_audio.folder_token(7, "2025-01-01T00:00:00", str(source)) == target.parent.name  # stable name


def test_the_player_copy_says_why_when_it_cannot_be_made(tmp_path: Path) -> None:
    maker = proxy_audio.ProxyMaker()
    gone = maker.request(tmp_path / "deleted.wav", tmp_path / "p" / "audio.webm")
    assert gone.state == "missing" and "no longer on the server" in gone.message
    bogus = tmp_path / "bogus.wav"
    bogus.write_text("not audio at all\n" * 50)
    target = tmp_path / "q" / "audio.webm"
    assert maker.request(bogus, target).state == "pending"
    maker.wait(target, 60)
    failed = maker.request(bogus, target)
    assert failed.state == "failed" and "could not be prepared" in failed.message and str(tmp_path) not in failed.message
    assert not target.exists() and not list(target.parent.glob(".*part"))
    # ffmpeg reads only the file's own bytes: a playlist naming another file is refused.
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXTINF:1,\n{DATA / 'jfk.flac'}\n")
    with pytest.raises(proxy_audio.ProxyError):
        proxy_audio.make(playlist, tmp_path / "r" / "audio.webm", timeout=60)


def test_a_player_copy_being_made_dies_with_a_server_killed_by_sigkill(tmp_path: Path) -> None:
    """ffmpeg writes the copy to a file, not a pipe, so nothing told it its server was gone: it
    went on encoding into the `.part` file that the restarted server writes again. It now gets
    the parent-death signal (audio.dies_with_us) and ends with the server, kill -9 included."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from webui.modules import audio

    if not audio.dies_with_us([])[:1]:
        pytest.skip("no setpriv that sets the parent-death signal here (Linux, util-linux 2.33 or later)")
    source = tmp_path / "long.wav"  # 20 minutes: a copy that takes a while to make, even at full speed
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "anoisesrc=d=1200:c=pink:r=8000:a=0.1",
                    "-ac", "1", str(source)], check=True)
    target = tmp_path / "player" / proxy_audio.FILE_NAME
    partial = target.with_name(f".{target.name}.part")
    server = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                               "from webui.modules import proxy_audio; proxy_audio.make(Path(sys.argv[1]), Path(sys.argv[2]))",
                               str(source), str(target)], cwd=Path(__file__).resolve().parents[1])

    def encoders() -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(partial).encode() in argv and any(a.endswith(b"ffmpeg") for a in argv):
                found.append(int(pid))
        return found

    deadline = time.time() + 30
    while not (partial.exists() and partial.stat().st_size > 0 and encoders()) and time.time() < deadline:
        time.sleep(0.05)
    assert encoders() and server.poll() is None, "the copy should be under way"
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    deadline = time.time() + 5
    while encoders() and time.time() < deadline:
        time.sleep(0.05)
    left = encoders()
    for pid in left:  # a failing run leaves no ffmpeg behind either
        os.kill(pid, signal.SIGKILL)
    assert not left
    size = partial.stat().st_size
    time.sleep(0.5)
    assert partial.stat().st_size == size and not target.exists()


def test_only_the_owner_or_the_admin_may_save_and_the_server_checks_again(history: History, tmp_path: Path) -> None:
    """The page's Edit button is only a convenience: the save handler finds the job with the
    visitor's own History rights and checks the lines itself."""
    from types import SimpleNamespace

    from webui.context import AppContext
    from webui.ui.transcript_view import TranscriptPanel

    job = finished_job(history, owner="ann")
    ctx = AppContext(SimpleNamespace(results_dir=str(tmp_path / "results")), tmp_path / "settings.json", history,
                     SimpleNamespace(jobs=lambda: []), logins=True, admins=frozenset({"root"}))
    panel = TranscriptPanel(ctx, "t")
    edit = SimpleNamespace(_data={"lines": lines((0.0, 2.0, "Hello there!", None), (2.5, 5.0, "General Kenobi.", None)),
                                  "base": 0})
    as_user = lambda name: SimpleNamespace(username=name, session_hash="s")  # noqa: E731

    refused = panel.save(job, edit, as_user("bob"))  # not his: as if there were no such job
    assert f"No job {job}" in refused[4] and history.revisions(job) == []
    bad = SimpleNamespace(_data={"lines": lines((0.0, 99.0, "too long", None)), "base": 0})
    assert "outside the recording" in panel.save(job, bad, as_user("ann"))[4] and history.revisions(job) == []
    saved = panel.save(job, edit, as_user("ann"))
    assert saved[4].startswith("Saved revision 1") and "Hello there!" in saved[1]
    again = panel.save(job, edit, as_user("root"))  # the admin may, but nothing changed
    assert "Nothing changed" in again[4] and [r.number for r in history.revisions(job)] == [1]
    stale = SimpleNamespace(_data={**edit._data, "lines": lines((0.0, 2.0, "Hi!", None)), "base": 0})
    assert "Revision 1 was saved meanwhile" in panel.save(job, stale, as_user("root"))[4]
    restored = panel.restore_revision(job, 0, as_user("root"))
    assert "Restored revision 0 as revision 2" in restored[4]
    assert [r.author for r in history.revisions(job)] == ["ann", "root"]
    # The player's folder is ann's, whoever opened the job: file_guard serves it to her (and the admin) only.
    record = history.get(job)
    token = proxy_audio.folder_token(record.id, record.created_at, record.file_path)
    assert ctx.download_owner(token) == "ann"


def test_renaming_a_speaker_renames_the_diarizers_turns_too() -> None:
    from dataclasses import replace

    from webui.modules.transcript import SpeakerTurn

    base = replace(MODEL, segments=[replace(MODEL.segments[0], speaker="SPEAKER_1"),
                                    replace(MODEL.segments[1], speaker="SPEAKER_2")],
                   turns=[SpeakerTurn(0.0, 2.2, "SPEAKER_1"), SpeakerTurn(2.3, 5.0, "SPEAKER_2")])
    renamed = revisions.rename_speaker(revisions.lines_of(base), "SPEAKER_1", "Obi-Wan")
    transcript = revisions.to_transcript(base, renamed)
    assert [t.speaker for t in transcript.turns] == ["Obi-Wan", "SPEAKER_2"]
    assert json.loads(render_file(transcript, "json", 1))["speakers"][0]["speaker"] == "Obi-Wan"


def test_a_corrected_line_keeps_the_language_it_was_in() -> None:
    """In a recording that changes language each line names its own (merge.assemble): the view
    marks each line's text with it (the browser picks Chinese or Japanese glyphs by it), a line a
    person rewrote or split is still in that language, the JSON download says so, and the
    language alone never makes a line count as changed."""
    from dataclasses import replace

    from webui.ui.transcript_view import Shown, view_html

    base = replace(MODEL, segments=[replace(MODEL.segments[0], language="en"),
                                    replace(MODEL.segments[1], text="大家好 今天开会", text_itn="大家好 今天开会",
                                            language="zh")])
    shown = revisions.lines_of(base)
    page = view_html(Shown(shown, language=base.language))
    assert '<ol class="tv-lines" lang="en">' in page and '<span class="tv-text" lang="zh">大家好 今天开会</span>' in page
    assert page.count('class="tv-lang"') == 1 and '>zh</span> <span class="tv-text" lang="zh">' in page  # the switch
    assert revisions.validate(lines((0.0, 2.0, "Hello there.", None), (2.5, 5.0, "大家好 今天开会", None)), 30.0) == shown
    edited = revisions.validate(lines((0.0, 2.0, "Hello there!", None), (2.5, 3.6, "大家好。", None),
                                      (3.6, 5.0, "今天开会。", None)), 30.0)
    transcript = revisions.to_transcript(base, edited)
    assert [s.display_text for s in transcript.segments] == ["Hello there!", "大家好。", "今天开会。"]
    assert [s["language"] for s in json.loads(render_file(transcript, "json", 1))["segments"]] == ["en", "zh", "zh"]
    assert "lang=" not in view_html(Shown(revisions.lines_of(MODEL)))  # nothing named, nothing said


def test_a_page_cannot_set_a_lines_language_and_a_stored_one_is_escaped() -> None:
    """A line's language comes from the model (or History's copy of it), never from what a page
    sends: a `language` in a saved line is dropped. Shown, it is escaped like every other text."""
    from dataclasses import replace

    from webui.ui.transcript_view import Shown, view_html

    evil = '"><script>alert(1)</script>'
    payload = json.dumps([{"start": 0.0, "end": 2.0, "text": "Hello there!", "language": evil}])
    [line] = revisions.validate(payload, 30.0)
    assert line.language == "" and revisions.to_transcript(MODEL, [line]).segments[0].language == ""
    page = view_html(Shown([replace(line, language=evil)], language=evil))
    assert "<script>" not in page and "&quot;&gt;&lt;script&gt;" in page
