"""The tabs' pure helpers: who owns a job, what each page shows, the status block, sizes and labels."""

from __future__ import annotations

import time
from types import SimpleNamespace

import gradio as gr

from webui.context import LOCAL, AppContext
from webui.modules.job_state import JobState
from webui.modules.transcript import TimedText, Transcript
from webui.ui import batch, history, transcribe
from webui.ui.common import (
    Screens, fmt_bytes, fmt_size, has_partial, status_html, status_word, user_jobs, user_of,
)


def state(**changes) -> JobState:
    base = dict(id="1-1", file_name="talk.wav", path="/tmp/talk.wav", owner=LOCAL, group="", status="running",
                position=0, ahead=0, stage="transcribe", percent=40.0, eta_seconds=None, message="", duration=600.0,
                segments=(), segments_done=0, segments_total=0, transcript=None, error="", history_id=1,
                model="whisper-base", created_at=time.time(), started_at=time.time(), finished_at=None)
    return JobState(**{**base, **changes})


PIECE = TimedText(0.0, 2.0, "hello there")
PARTIAL = Transcript(file="talk.wav", duration=600.0, model="whisper-base", text="hello there", segments=[PIECE])


def test_file_sizes_are_decimal_and_memory_is_labelled_binary() -> None:
    assert fmt_size(23_660_000) == "23.66 MB"  # what a file manager says for the user's 147-minute file
    assert fmt_size(1_152_693) == "1.15 MB" and fmt_size(999) == "999 B" and fmt_size(2_500) == "2.50 kB"
    assert fmt_bytes(23_660_000) == "22.56 MiB"  # GPU memory: 1024-based, and says so


def context(jobs, logins: bool = False) -> AppContext:
    queue = SimpleNamespace(jobs=lambda: list(jobs))
    return AppContext(SimpleNamespace(upload_dir="/nonexistent-uploads"), None, None, queue, logins=logins)


def test_the_user_is_the_login_or_the_one_local_user() -> None:
    jobs = [state(id="a", owner="ann"), state(id="b", owner=LOCAL), state(id="c", owner="")]
    ann = SimpleNamespace(username="ann", session_hash="abc")
    assert user_of(context(jobs, logins=True), ann) == "ann"
    assert user_of(context(jobs), SimpleNamespace(username=None, session_hash="abc")) == LOCAL  # not the session
    assert user_of(context(jobs), None) == LOCAL
    assert [s.id for s in user_jobs(context(jobs, logins=True), ann)] == ["a"]
    assert [s.id for s in user_jobs(context(jobs), None)] == ["b", "c"]  # locally also jobs from before owners


def test_screens_know_what_each_page_shows() -> None:
    screens = Screens(keep=2)
    page1, page2, page3 = (SimpleNamespace(session_hash=h) for h in ("p1", "p2", "p3"))
    screens.show(page1, "job-1")
    assert screens.shows(page1, "job-1") and not screens.shows(page2, "job-1")
    screens.show(page1, "")  # a new upload: the loop following job-1 stops
    assert not screens.shows(page1, "job-1") and screens.current(page1) == ""
    screens.show(page2, "job-2")
    screens.show(page3, "job-3")  # the oldest page is forgotten beyond `keep`
    assert screens.current(page1) == "" and screens.shows(page3, "job-3")
    assert not screens.shows(page2, "")


def test_status_block_running_warnings_and_partial_results() -> None:
    assert "ETA estimating" in status_html(state())  # before the first window is done
    assert "ETA 1:05" in status_html(state(eta_seconds=65.0))
    done = status_html(state(status="done", stage="done", transcript=PARTIAL, segments=(PIECE,),
                             finished_at=time.time(), warnings=("ITN left 2 piece(s) as spoken.",)))
    assert '<div class="warning">ITN left 2 piece(s) as spoken.</div>' in done and "error" not in done
    assert "warning" not in status_html(state(warnings=("later",)))  # shown once the job has ended
    failed = state(status="failed", stage="failed", error="Model problem: out of memory", transcript=PARTIAL,
                   segments=(PIECE,), finished_at=time.time())
    assert has_partial(failed) and "partial" in status_html(failed) and "out of memory" in status_html(failed)
    bare = state(status="failed", stage="failed", error="boom", finished_at=time.time())
    assert not has_partial(bare) and "nothing was transcribed" in status_html(bare)


def test_short_status_words_and_job_labels() -> None:
    assert status_word(state(status="queued", ahead=1)) == "queued, 2nd in line"
    assert status_word(state(percent=33.4)) == "running 33%"
    assert status_word(state(status="done")) == "done"
    assert transcribe._job_label(state(group="g1", percent=5.0)) == "talk.wav · running 5% · batch"


def test_download_buttons_say_partial() -> None:
    off = transcribe._downloads()
    assert [b.label for b in off] == ["TXT", "SRT", "VTT", "JSON"] and not any(b.interactive for b in off)
    files = {f: f"/tmp/talk.{f}" for f in ("txt", "srt", "vtt", "json")}
    partial = transcribe._downloads(files, partial=True)
    assert partial[0].label == "TXT (partial)" and all(b.interactive for b in partial)


def test_history_settings_in_words_and_job_numbers() -> None:
    line = history._settings_line({"engine": {"device": "cpu", "precision": "int8", "use_model_itn": False,
                                              "hotwords": ""}, "itn": False, "max_segment": "auto",
                                   "vad": {"backend": "librosa"}})
    assert "ITN off" in line and "device cpu" in line and "use_model_itn" not in line
    assert history._settings_line({}) == "Settings: not recorded"
    assert history._job_number("") is None and history._job_number(" 12 ") == 12 and history._job_number("x") is None


def test_a_batch_is_shown_again_while_it_runs_or_for_an_hour_after() -> None:
    now = time.time()
    assert batch._recent([state(status="done", finished_at=now - 60), state(status="running")])
    assert batch._recent([state(status="done", finished_at=now - 600)])
    assert not batch._recent([state(status="done", finished_at=now - 2 * 3600)])


def test_a_new_page_shows_the_users_running_job_else_the_one_just_finished() -> None:
    now = time.time()
    jobs = [state(id="old", status="done", finished_at=now - 2 * 3600), state(id="ann", owner="ann"),
            state(id="batch", group="g1")]
    view = transcribe._View(context(jobs))
    page = SimpleNamespace(username=None, session_hash="p1")
    assert all(v == gr.skip() for v in view.pick(page)) and view.screens.current(page) == ""  # the page stays idle
    jobs.append(state(id="done", status="done", finished_at=now - 60))
    assert view.pick(page)[0] == "done" and view.screens.shows(page, "done")  # finished within the hour
    jobs.append(state(id="run", status="running"))
    assert view.pick(page)[0] == "run"  # a running job comes first
    assert view.show("run", page)[0] == "run"
    assert "no longer known" in view.show("ann", page)[1]  # another user's job id sent by the page: refused


def test_the_status_line_counts_audio_and_says_when_a_job_spanned_a_restart() -> None:
    running = status_html(state(audio_done=252.0, duration=1121.0, percent=22.5, eta_seconds=190.0,
                                segments_done=2, segments_total=46))
    assert "4:12 of 18:41 of audio (22%)" in running and "ETA 3:10" in running
    assert "segment" not in running  # one counter, not two that disagree
    assert "ETA estimating" in status_html(state(audio_done=30.0, duration=1121.0))  # no rate yet: no figure
    scanning = status_html(state(stage="scan", duration=1121.0))
    assert "18:41 of audio" in scanning and "ETA" not in scanning
    now = time.time()
    resumed = status_html(state(status="done", stage="done", duration=1121.0, started_at=now - 76, finished_at=now,
                                prior_seconds=600.0, transcript=PARTIAL, segments=(PIECE,)))
    assert "18:41 of audio in 11:16 (over a restart)" in resumed  # the whole job, not the 1:16 after it


def test_who_is_logged_in_is_escaped_and_offers_the_way_out() -> None:
    from webui.ui.common import account_html

    ctx = context([], logins=True)
    ctx.admins = frozenset({"<b>root</b>"})
    line = account_html(ctx, SimpleNamespace(username="<b>root</b>", session_hash="s"))
    assert "<b>&lt;b&gt;root&lt;/b&gt;</b>" in line  # the name as text, inside our own bold
    assert "(administrator)" in line and 'href="/logout"' in line
    assert "no logins" in account_html(context([]), None) and "logout" not in account_html(context([]), None)
