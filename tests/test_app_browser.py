"""The whole application in a real browser: Debian's chromium driven by Playwright.

One server and one page for the module; the tests run in file order (the History test finds
the job the Transcribe test made). A screenshot of every tab in its main states lands in
$SCREENSHOTS_DIR (default test-output/screenshots/) and in /tmp/screens/. The transcript view
and its editor: test_transcript_view_browser.py; logins: test_logins_browser.py.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from tests.browser import browser_fixture, page_fixture  # noqa: F401  (the browser and page fixtures)
from tests.browser import (
    JFK, OFF_SERVER, new_context, open_job, open_page, open_tab, shot, table_rows, upload, view_lines, view_text,
)
from tests.conftest import DATA
from tests.test_api import Server, start_server
from webui.modules.history import History

pytestmark = pytest.mark.browser
browser = browser_fixture  # test_attacks.py takes the browser fixture from here
LONG = DATA / "two_cities.wav"
BATCH = [DATA / "english.wav", DATA / "goforward.wav", DATA / "1089-134691-0000.flac"]
MEETING_MINUTES = 30  # ~1-2 min of work here (2 cores): still running after a reload and a second browser
# Records every text the Transcribe status block shows, to catch a state that lasts a moment.
WATCH_STATUS = """() => { window.statusSeen = []; const el = document.querySelector('#tx-progress');
    new MutationObserver(() => window.statusSeen.push(el.innerText))
        .observe(el, {subtree: true, childList: true, characterData: true}); }"""
# Records when the live box's text changed, its line count, and whether it showed its end then.
WATCH_TEXT = """() => { window.textSeen = []; let last = '';
    setInterval(() => { const box = document.querySelector('#tx-text textarea');
        if (!box || box.value === last) return;
        last = box.value;
        setTimeout(() => window.textSeen.push([Date.now() / 1000, box.value.split('\\n').length,
            box.scrollTop + box.clientHeight >= box.scrollHeight - 30, box.scrollTop]), 150); }, 100); }"""
COUNTER = re.compile(r"(\d+(?::\d\d)+) of (\d+(?::\d\d)+) of audio \((\d+)%\)")
ETA = re.compile(r"ETA (\d+(?::\d\d)+)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_server(tmp_path_factory.mktemp("browser-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.recordings import build, load_clips

    path = tmp_path_factory.mktemp("meeting") / "meeting.wav"
    build(path, MEETING_MINUTES, seed=11, clips=load_clips())
    return path


def spoken(timestamped: str) -> str:
    """The words of a '[start --> end] text' listing, lines joined (lines split at pauses)."""
    return " ".join(re.sub(r"^\[[^\]]*\]\s*", "", line) for line in timestamped.splitlines()).lower()


def text_of(page) -> str:
    return page.locator("#tx-text textarea").input_value()


def wait_for_text(page, timeout: float = 120_000) -> None:
    """Text on screen: the live box's, or the transcript view's once the job has ended."""
    page.wait_for_function("(document.querySelector('#tx-text textarea') || {value: ''}).value.length > 0"
                           " || document.querySelector('#tx-transcript .tv-line') !== null", timeout=timeout)


def seconds(clock: str) -> int:
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    return total


def test_a_new_page_is_idle(page) -> None:
    from playwright.sync_api import expect

    assert "Choose a recording and press Start." in page.locator("#tx-progress").inner_text()
    expect(page.locator("#tx-cancel")).to_be_disabled()  # no job of this page
    assert text_of(page) == ""
    open_tab(page, "History")
    assert page.locator("#hist-id input, #hist-id textarea").first.input_value() == ""  # not 0
    open_tab(page, "Transcribe")


def test_transcribe_a_speech_clip_and_download_srt(page, server: Server) -> None:
    open_tab(page, "Transcribe")
    upload(page, "#tx-upload", [JFK])
    page.click("#tx-start")
    progress = page.locator("#tx-progress")
    progress.locator(".job-status.done").wait_for(timeout=150_000)
    page.locator("#tx-transcript .tv-line").first.wait_for()  # the finished job: its lines, not the live box
    assert page.locator("#tx-text textarea").count() == 0
    lines = view_lines(page, "#tx-transcript")
    assert "ask not what your country can do for you" in view_text(page, "#tx-transcript")
    assert lines[0][0] == "0:00" and all(re.fullmatch(r"\d+:\d\d", t) for t, _, _ in lines)  # timed lines
    assert "jfk.flac" in progress.inner_text()
    with page.expect_download() as info:
        page.click("#tx-dl-srt")
    srt = Path(info.value.path()).read_text(encoding="utf-8")
    assert info.value.suggested_filename == "jfk.srt"
    assert srt.startswith("1\n00:00:") and "country" in srt
    page.locator("#tx-transcript audio").wait_for()  # the player, once its copy of the recording is made
    shot(page, "1-transcribe-done")


def test_bad_upload_shows_a_clear_message(page, server: Server, tmp_path: Path) -> None:
    bogus = tmp_path / "broken.wav"
    bogus.write_text("this is a text file pretending to be audio\n" * 30)
    before = History(server.history_path).count()
    open_tab(page, "Transcribe")
    upload(page, "#tx-upload", [bogus])
    page.click("#tx-start")
    message = page.locator("#tx-progress").get_by_text("Cannot transcribe broken.wav")
    message.wait_for()
    assert "not a readable audio or video file" in message.inner_text()
    assert History(server.history_path).count() == before  # history untouched
    assert page.request.get(f"{server.url}/api/health").json()["status"] == "ok"  # server still up


def test_two_sessions_share_one_queue_and_see_their_place(page, server: Server) -> None:
    open_tab(page, "Transcribe")
    other = page.context.new_page()  # a second browser session
    try:
        other.goto(server.url)
        other.wait_for_selector("#tx-start")
        upload(page, "#tx-upload", [LONG])
        upload(other, "#tx-upload", [JFK])
        page.click("#tx-start")
        page.locator("#tx-progress .job-status.running").wait_for()
        other.click("#tx-start")
        waiting = other.locator("#tx-progress").get_by_text("2nd in the queue")
        waiting.wait_for(timeout=10_000)
        assert "1 job ahead" in waiting.inner_text()
        shot(other, "1c-second-session-waiting")
        page.locator("#tx-progress .job-status.done").wait_for(timeout=150_000)
        other.locator("#tx-progress .job-status.done").wait_for(timeout=150_000)
        page.locator("#tx-transcript .tv-line").first.wait_for()
        other.locator("#tx-transcript .tv-line").first.wait_for()
        assert "best of times" in view_text(page, "#tx-transcript")
        assert "ask not what your country" in view_text(other, "#tx-transcript")
    finally:
        other.close()


def test_batch_of_three_files(page, server: Server) -> None:
    open_tab(page, "Batch")
    upload(page, "#batch-files", BATCH)
    page.click("#batch-start")
    page.locator("#batch-status").get_by_text("finished").wait_for()
    shot(page, "2a-batch-running")
    page.locator("#batch-status").get_by_text("3 of 3 finished").wait_for(timeout=150_000)
    rows = table_rows(page, "#batch-table")
    assert sorted(r[1] for r in rows) == sorted(f.name for f in BATCH), rows
    assert [r[2] for r in rows] == ["done"] * 3, rows
    assert all(re.fullmatch(r"took \d+:\d\d", r[4]) for r in rows), rows  # not an empty Queue column
    assert all(r[3].endswith("(100%)") for r in rows), rows
    with page.expect_download() as info:
        page.click("#batch-dl-csv")
    summary = Path(info.value.path()).read_text(encoding="utf-8").splitlines()
    assert summary[0].startswith("file,status")
    assert sorted(line.split(",")[0] for line in summary[1:]) == sorted(f.name for f in BATCH)
    assert all(",done," in line for line in summary[1:])
    with page.expect_download() as info:
        page.click("#batch-dl-zip")
    assert info.value.suggested_filename == "transcripts.zip"
    names = set(zipfile.ZipFile(info.value.path()).namelist())
    assert {"summary.csv", "summary.json"} <= names and len(names) == 2 + 4 * len(BATCH), names
    names = {r.file_name for r in History(server.history_path).search(status="done")}
    assert {f.name for f in BATCH} <= names  # every batch file also lands in History
    shot(page, "2b-batch-done")
    # A server folder outside the allowed roots is refused with a clear message.
    page.locator("#batch-files button[aria-label='Clear']").first.click()
    page.locator("#batch-folder textarea, #batch-folder input").first.fill("/etc")
    page.click("#batch-start")
    page.locator("#batch-status").get_by_text("is not under an allowed folder").wait_for()


def test_history_search_finds_the_job(page, server: Server) -> None:
    from playwright.sync_api import expect

    open_tab(page, "History")
    page.locator("#hist-msg").get_by_text("job(s) found.").wait_for()  # opening the tab lists the jobs afresh
    # Housekeeping opened long before its number is typed: the box is in the page a moment before
    # it holds its default, and a number typed in between was overwritten (CI archived with 30 days).
    page.get_by_text("Housekeeping").click()
    days = page.locator("#hist-days input")
    expect(days).to_have_value("30")
    page.locator("#hist-text input, #hist-text textarea").first.fill("country")
    page.click("#hist-search")
    page.locator("#hist-msg").get_by_text("2 job(s) found.").wait_for()  # jfk.flac from both sessions
    rows = table_rows(page, "#hist-table")
    assert [(r[2], r[5]) for r in rows] == [("jfk.flac", "done")] * 2, rows  # not the batch files
    assert all("country" in r[6] for r in rows)
    page.locator("#hist-table [role=gridcell][data-row='0'][data-col='2']").click()  # selecting the row opens it
    page.locator("#hist-details").get_by_text("jfk.flac").first.wait_for()
    page.locator("#hist-transcript .tv-line").first.wait_for()
    assert "ask not what your country can do for you" in view_text(page, "#hist-transcript")
    details = page.locator("#hist-details").inner_text()
    assert "ask not" not in details  # the details say about the job; the text is only in the lines below
    page.locator("#hist-transcript audio").wait_for()  # the player works in History too
    with page.expect_download() as info:
        page.click("#hist-dl-vtt")
    assert Path(info.value.path()).read_text(encoding="utf-8").startswith("WEBVTT")
    shot(page, "3a-history-job")
    # Housekeeping: archive everything older than 0 days, then VACUUM.
    days.fill("0")
    days.press("Tab")  # the number is taken before Archive is pressed
    expect(days).to_have_value("0")
    page.click("#hist-archive")
    total = History(server.history_path).count()
    expect(page.locator("#hist-house-msg")).to_contain_text(f"Archived {total} job(s)", timeout=30_000)
    page.locator("#hist-msg").get_by_text("0 job(s) found.").wait_for()  # archived jobs leave the search
    page.click("#hist-vacuum")
    page.locator("#hist-house-msg").get_by_text("VACUUM done").wait_for()


def test_a_running_job_survives_a_reload_and_shows_in_a_second_browser(page, browser, server: Server,
                                                                      meeting: Path) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Transcribe")
    upload(page, "#tx-upload", [meeting])
    status = page.locator("#tx-progress")
    status.get_by_text("Ready · meeting.wav").wait_for()
    page.evaluate(WATCH_STATUS)
    page.evaluate(WATCH_TEXT)
    page.click("#tx-start")
    running = status.locator(".job-status.running")
    running.wait_for(timeout=60_000)
    assert any("Starting" in seen for seen in page.evaluate("window.statusSeen"))  # shown before the server answered
    expect(page.locator("#tx-cancel")).to_be_enabled()
    wait_for_text(page)  # the first window's text, with an ETA, long before the end
    running.get_by_text(re.compile(r"ETA \d+:\d\d")).wait_for()
    assert "queue:" not in status.inner_text() and "processing |" not in status.inner_text()  # no Gradio overlay
    # The box follows new text to its end; scrolled up by the reader, it stays where they are.
    page.wait_for_function("window.textSeen.length >= 3", timeout=120_000)
    box = page.locator("#tx-text textarea")
    box.evaluate("b => { b.scrollTop = 0; b.dispatchEvent(new Event('scroll')); }")
    updates = len(page.evaluate("window.textSeen"))
    page.wait_for_function(f"window.textSeen.length > {updates}", timeout=120_000)
    assert page.evaluate("window.textSeen")[-1][3] < 40  # not pulled down while the reader looks above
    box.evaluate("b => { b.scrollTop = b.scrollHeight; b.dispatchEvent(new Event('scroll')); }")
    # One counter, audio done of the total, only ever growing; an ETA only once the job has a
    # rate of its own, and never a higher figure while it works.
    seen = [t for t in page.evaluate("window.statusSeen") if "of audio (" in t]
    counts = [COUNTER.search(t) for t in seen]
    assert all(counts) and {c.group(2) for c in counts} == {f"{MEETING_MINUTES}:00"}, seen
    done = [seconds(c.group(1)) for c in counts]
    assert done == sorted(done) and done[-1] > 0, seen
    assert "ETA estimating" in seen[0] and not any("segment" in t for t in seen), seen
    figures = [seconds(m.group(1)) if (m := ETA.search(t)) else None for t in seen]
    assert any(f is not None for f in figures), seen
    for a, b in zip(figures, figures[1:]):
        assert a is None or b is None or b <= a, f"the ETA rose from {a} to {b} s: {seen}"
    texts = page.evaluate("window.textSeen")
    assert all(pinned for _, _, pinned, _ in texts[:-1]), texts  # followed the new text (until scrolled up)
    gaps = [b[0] - a[0] for a, b in zip(texts, texts[1:])]
    # Lines arrive after every batch; 15 s on an idle machine, some slack for a loaded one.
    assert max(gaps) < 30, f"partial text came {max(gaps):.0f} s apart: {gaps}"

    page.reload()
    page.wait_for_selector("#tx-start")
    running.get_by_text("meeting.wav").wait_for()  # the same job, followed again
    wait_for_text(page)
    assert re.search(r"\d+%", running.inner_text())
    expect(page.locator("#tx-cancel")).to_be_enabled()
    shot(page, "6-transcribe-running-after-reload")
    open_tab(page, "History")  # History says how far the running job is, not just "running"
    rows = table_rows(page, "#hist-table")
    assert any(r[2] == "meeting.wav" and re.match(r"running \d+%", r[5]) for r in rows), rows
    open_tab(page, "Batch")  # the batch finished within the hour is still there, with its downloads
    page.locator("#batch-status").get_by_text("3 of 3 finished").wait_for()
    expect(page.locator("#batch-dl-csv")).to_be_enabled()
    open_tab(page, "Transcribe")

    errors: list[str] = []
    context = new_context(browser, server, errors)
    try:
        other = open_page(context, server)
        other.locator("#tx-progress .job-status").get_by_text("meeting.wav").wait_for()
        # A new upload clears the screen but not the job: it waits in the list, one click away.
        upload(other, "#tx-upload", [JFK])
        other.locator("#tx-progress").get_by_text("Ready · jfk.flac · 1.15 MB · 0:11").wait_for()
        assert text_of(other) == ""
        choice = other.locator("#tx-others").get_by_text("meeting.wav")
        choice.wait_for()
        shot(other, "6b-second-browser-other-jobs")
        choice.click()
        other.locator("#tx-progress .job-status").get_by_text("meeting.wav").wait_for()
        wait_for_text(other)
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the second browser: {errors}"

    status.locator(".job-status.done").wait_for(timeout=400_000)
    expect(page.locator("#tx-cancel")).to_be_disabled()
    page.locator("#tx-transcript .tv-line").first.wait_for()
    with page.expect_download() as info:
        page.click("#tx-dl-txt")
    assert info.value.suggested_filename == "meeting.txt"
    txt = Path(info.value.path()).read_text(encoding="utf-8")
    lines = view_lines(page, "#tx-transcript")
    assert [re.sub(r"^\[[^\]]*\]\s*", "", line) for line in txt.splitlines()] == [t for _, _, t in lines]
    assert len(lines) > 20
    shot(page, "7-reloaded-job-done")
    # History: a long job's page stays short (the lines scroll in their own box), and playback
    # keeps the line playing in view.
    job = max(r.id for r in History(server.history_path).search(name="meeting.wav"))
    open_job(page, job)
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 1800, f"the History page is {height} px tall"
    view = "#hist-transcript"
    page.locator(f"{view} audio").wait_for(timeout=120_000)
    page.wait_for_function(f"document.querySelector('{view} audio').duration > {MEETING_MINUTES * 60 - 5}")
    late = page.locator(f"{view} .tv-line").nth(len(lines) - 3)
    at = float(late.get_attribute("data-start")) + 0.2
    page.locator(f"{view} audio").evaluate(f"a => {{ a.currentTime = {at}; }}")
    expect(late).to_have_class(re.compile("tv-current"))
    visible = page.locator(f"{view} .tv-lines").evaluate(
        "box => { const li = box.querySelector('.tv-current'); const b = box.getBoundingClientRect(), "
        "r = li.getBoundingClientRect(); return r.top >= b.top - 1 && r.bottom <= b.bottom + 1; }")
    assert visible, "the line playing is not in view"
    shot(page, "7b-history-long-job")


def test_a_new_upload_clears_the_previous_result(page) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Transcribe")
    expect(page.locator("#tx-dl-txt")).to_be_enabled()  # the finished job is on screen
    on = page.locator("#tx-dl-txt").evaluate("b => getComputedStyle(b).backgroundColor")
    assert on not in ("rgba(0, 0, 0, 0)", "transparent"), on
    upload(page, "#tx-upload", [JFK])
    page.locator("#tx-progress").get_by_text("Ready · jfk.flac · 1.15 MB").wait_for()  # decimal MB
    expect(page.locator("#tx-text textarea")).to_have_value("")
    for fmt in ("txt", "srt", "vtt", "json"):
        expect(page.locator(f"#tx-dl-{fmt}")).to_be_disabled()
    expect(page.locator("#tx-cancel")).to_be_disabled()
    expect(page.locator("#tx-transcript audio")).to_have_count(0)
    expect(page.locator("#tx-transcript .tv-line")).to_have_count(0)
    size = page.locator('#tx-upload a[data-testid="download-link"]').first  # Gradio's 1024-based "MB": hidden
    assert size.evaluate("a => getComputedStyle(a).fontSize") == "0px"
    # An enabled download button looks it; a disabled one plainly does not.
    off = page.locator("#tx-dl-txt").evaluate("b => getComputedStyle(b).backgroundColor")
    assert off in ("rgba(0, 0, 0, 0)", "transparent"), off
    shot(page, "8-new-upload")


def test_vad_inspection_shows_segments(page, server: Server) -> None:
    open_tab(page, "VAD inspection")
    upload(page, "#vad-file", [DATA / "two_cities.wav"])
    page.click("#vad-run")
    summary = page.locator("#vad-summary")
    summary.get_by_text("segment(s)").first.wait_for(timeout=60_000)
    assert "effective maximum segment length 30 s" in summary.inner_text()
    page.locator("#vad-plot img").first.wait_for()
    rows = table_rows(page, "#vad-table")
    assert len(rows) >= 2 and all(0 < float(r[3]) <= 30.0 for r in rows), rows  # lengths within the maximum
    assert float(rows[0][1]) == 0.0
    shot(page, "4-vad")


def test_deep_gpu_cleanup_button_shows_a_result(page, server: Server) -> None:
    open_tab(page, "System")
    page.click("#sys-cleanup")
    result = page.locator("#sys-action")
    result.get_by_text("Deep GPU cleanup done").wait_for()
    assert "No GPU on this server" in result.inner_text() and "0 B" not in result.inner_text()
    memory = page.locator("#sys-memory")  # no GPU here: no rows of 0 B, no GPU line in the chart
    assert "No GPU on this server" in memory.inner_text() and "Reserved" not in memory.inner_text()
    legend = page.locator("#sys-memory-chart").inner_text()
    assert "Host RSS" in legend and "GPU" not in legend
    # Settings saved from the page land in the settings file (and so survive a restart).
    page.locator("#sys-hotwords input, #sys-hotwords textarea").first.fill("Kennedy, Boston")
    page.click("#sys-save")
    page.locator("#sys-save-msg").get_by_text("Saved to").wait_for()
    saved = json.loads((server.workdir / "settings.json").read_text(encoding="utf-8"))
    assert saved["hotwords"] == "Kennedy, Boston" and saved["device"] == "cpu"
    shot(page, "5-system")


def test_the_page_loads_nothing_from_outside_the_server(page) -> None:
    assert OFF_SERVER == [], OFF_SERVER


def test_accurate_mode_is_a_box_on_both_tabs_and_reaches_the_job(page, server: Server) -> None:
    """Issue 19: the accurate mode is offered on the Transcribe and Batch tabs, off by default, and
    a ticked box goes with that job only (its stored options say so; the next job is default)."""
    from webui.modules.options import options_from_record

    def newest_options(name: str):
        records = [r for r in History(server.history_path).search(status="done") if r.file_name == name]
        return options_from_record(max(records, key=lambda r: r.id).settings)

    open_tab(page, "Transcribe")
    box = page.locator("#tx-accurate input[type=checkbox]")
    assert not box.is_checked()
    box.check()
    upload(page, "#tx-upload", [JFK])
    page.click("#tx-start")
    page.locator("#tx-progress .job-status.done").wait_for(timeout=150_000)
    assert "ask not what your country can do for you" in view_text(page, "#tx-transcript")
    assert newest_options(JFK.name).accurate is True
    open_tab(page, "Batch")
    batch_box = page.locator("#batch-accurate input[type=checkbox]")
    assert not batch_box.is_checked()
    clear = page.locator("#batch-files button[aria-label='Clear']")
    if clear.count():  # files left by an earlier test of this page
        clear.first.click()
    page.locator("#batch-folder textarea, #batch-folder input").first.fill("")  # ditto: a folder
    upload(page, "#batch-files", [DATA / "goforward.wav"])
    page.click("#batch-start")
    page.locator("#batch-status").get_by_text("1 of 1 finished").wait_for(timeout=150_000)
    assert newest_options("goforward.wav").accurate is False  # the box was left off
