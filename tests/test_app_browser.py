"""The whole application in a real browser: Debian's chromium driven by Playwright.

One server and one page for the module; the tests run in file order (the History test finds
the job the Transcribe test made). A screenshot of every tab lands in test-output/screenshots/.
"""

from __future__ import annotations

import re

import json
import time
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.test_api import ROOT, Server, start_server
from webui.modules.history import History

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = ROOT / "test-output" / "screenshots"
OFF_SERVER: list[str] = []  # requests the page made to anything but our server
JFK = DATA / "jfk.flac"
LONG = DATA / "two_cities.wav"
BATCH = [DATA / "english.wav", DATA / "goforward.wav", DATA / "1089-134691-0000.flac"]
MEETING_MINUTES = 20  # ~30 s of work here (2 cores): still running after a reload and a second browser
# Records every text the Transcribe status block shows, to catch a state that lasts a moment.
WATCH_STATUS = """() => { window.statusSeen = []; const el = document.querySelector('#tx-progress');
    new MutationObserver(() => window.statusSeen.push(el.innerText))
        .observe(el, {subtree: true, childList: true, characterData: true}); }"""


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


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_context(browser, server: Server, errors: list[str]):
    """A browser context of its own (cookies, storage: another browser as far as the server knows)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    context.on("page", lambda pg: pg.on("pageerror", lambda exc: errors.append(str(exc))))
    context.on("request", lambda r: None if r.url.startswith((server.url, "data:", "blob:"))
               else OFF_SERVER.append(r.url))
    return context


def open_page(context, server: Server):
    pg = context.new_page()
    pg.goto(server.url)
    pg.wait_for_selector("#tx-start")
    return pg


@pytest.fixture(scope="module")
def page(browser, server: Server):
    errors: list[str] = []
    context = new_context(browser, server, errors)
    yield open_page(context, server)
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def shot(page, name: str) -> None:
    page.wait_for_timeout(300)  # let the last update paint
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def upload(page, selector: str, files) -> None:
    clear = page.locator(f"{selector} button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator(f"{selector} input[type=file]").set_input_files([str(f) for f in files])
    for f in files:  # uploaded once the component links to the server's copy
        page.locator(f'{selector} a[data-testid="download-link"][download="{Path(f).name}"]').first.wait_for()


def table_rows(page, selector: str) -> list[list[str]]:
    """The cell texts of a gr.Dataframe, row by row (its visible grid, not the hidden copy)."""
    return page.locator(selector).evaluate(
        """el => [...el.querySelectorAll('[role=row][data-index]')].map(
               row => [...row.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()))"""
    )


def spoken(timestamped: str) -> str:
    """The words of a '[start --> end] text' listing, lines joined (lines split at pauses)."""
    return " ".join(re.sub(r"^\[[^\]]*\]\s*", "", line) for line in timestamped.splitlines()).lower()


def text_of(page) -> str:
    return page.locator("#tx-text textarea").input_value()


def wait_for_text(page, timeout: float = 120_000) -> None:
    page.wait_for_function("document.querySelector('#tx-text textarea').value.length > 0", timeout=timeout)


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
    text = page.locator("#tx-text textarea").input_value()
    assert "ask not what your country can do for you" in spoken(text)
    assert text.startswith("[00:00:")  # timestamped lines
    assert "jfk.flac" in progress.inner_text()
    with page.expect_download() as info:
        page.click("#tx-dl-srt")
    srt = Path(info.value.path()).read_text(encoding="utf-8")
    assert info.value.suggested_filename == "jfk.srt"
    assert srt.startswith("1\n00:00:") and "country" in srt
    page.locator("#tx-player audio").first.wait_for(state="attached")  # the player has the recording
    shot(page, "1-transcribe")


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
        other.screenshot(path=str(SHOTS / "1b-second-session-waiting.png"), full_page=True)
        page.locator("#tx-progress .job-status.done").wait_for(timeout=150_000)
        other.locator("#tx-progress .job-status.done").wait_for(timeout=150_000)
        assert "best of times" in page.locator("#tx-text textarea").input_value().lower()
        assert "ask not what your country" in spoken(other.locator("#tx-text textarea").input_value())
    finally:
        other.close()


def test_batch_of_three_files(page, server: Server) -> None:
    open_tab(page, "Batch")
    upload(page, "#batch-files", BATCH)
    page.click("#batch-start")
    page.locator("#batch-status").get_by_text("3 of 3 finished").wait_for(timeout=150_000)
    rows = table_rows(page, "#batch-table")
    assert sorted(r[1] for r in rows) == sorted(f.name for f in BATCH), rows
    assert [r[2] for r in rows] == ["done"] * 3, rows
    with page.expect_download() as info:
        page.click("#batch-dl-csv")
    summary = Path(info.value.path()).read_text(encoding="utf-8").splitlines()
    assert summary[0].startswith("file,status")
    assert sorted(line.split(",")[0] for line in summary[1:]) == sorted(f.name for f in BATCH)
    assert all(",done," in line for line in summary[1:])
    with page.expect_download() as info:
        page.click("#batch-dl-zip")
    assert info.value.suggested_filename == "transcripts.zip"
    names = {r.file_name for r in History(server.history_path).search(status="done")}
    assert {f.name for f in BATCH} <= names  # every batch file also lands in History
    shot(page, "2-batch")
    # A server folder outside the allowed roots is refused with a clear message.
    page.locator("#batch-files button[aria-label='Clear']").first.click()
    page.locator("#batch-folder textarea, #batch-folder input").first.fill("/etc")
    page.click("#batch-start")
    page.locator("#batch-status").get_by_text("is not under an allowed folder").wait_for()


def test_history_search_finds_the_job(page, server: Server) -> None:
    open_tab(page, "History")
    page.locator("#hist-text input, #hist-text textarea").first.fill("country")
    page.click("#hist-search")
    page.locator("#hist-msg").get_by_text("2 job(s) found.").wait_for()  # jfk.flac from both sessions
    rows = table_rows(page, "#hist-table")
    assert [(r[2], r[5]) for r in rows] == [("jfk.flac", "done")] * 2, rows  # not the batch files
    assert all("country" in r[6] for r in rows)
    page.locator("#hist-table [role=gridcell][data-row='0'][data-col='2']").click()  # selecting the row opens it
    page.locator("#hist-details").get_by_text("jfk.flac").first.wait_for()
    body = page.locator("#hist-job-text textarea")
    deadline = time.monotonic() + 20
    while "country" not in body.input_value() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "ask not what your country can do for you" in spoken(body.input_value())
    with page.expect_download() as info:
        page.click("#hist-dl-vtt")
    assert Path(info.value.path()).read_text(encoding="utf-8").startswith("WEBVTT")
    shot(page, "3-history")
    # Housekeeping: archive everything older than 0 days, then VACUUM.
    page.get_by_text("Housekeeping").click()
    page.locator("#hist-days input").fill("0")
    page.click("#hist-archive")
    total = History(server.history_path).count()
    page.locator("#hist-house-msg").get_by_text(f"Archived {total} job(s)").wait_for()
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
    page.click("#tx-start")
    running = status.locator(".job-status.running")
    running.wait_for(timeout=60_000)
    assert any("Starting" in seen for seen in page.evaluate("window.statusSeen"))  # shown before the server answered
    expect(page.locator("#tx-cancel")).to_be_enabled()
    wait_for_text(page)  # the first window's text, with an ETA, long before the end
    running.get_by_text(re.compile(r"ETA \d+:\d\d")).wait_for()
    assert "queue:" not in status.inner_text() and "processing |" not in status.inner_text()  # no Gradio overlay

    page.reload()
    page.wait_for_selector("#tx-start")
    running.get_by_text("meeting.wav").wait_for()  # the same job, followed again
    wait_for_text(page)
    assert re.search(r"\d+%", running.inner_text())
    expect(page.locator("#tx-cancel")).to_be_enabled()
    shot(page, "6-reloaded-while-running")
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
        other.screenshot(path=str(SHOTS / "6b-second-browser-other-jobs.png"), full_page=True)
        choice.click()
        other.locator("#tx-progress .job-status").get_by_text("meeting.wav").wait_for()
        wait_for_text(other)
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the second browser: {errors}"

    status.locator(".job-status.done").wait_for(timeout=400_000)
    expect(page.locator("#tx-cancel")).to_be_disabled()
    with page.expect_download() as info:
        page.click("#tx-dl-txt")
    assert info.value.suggested_filename == "meeting.txt"
    txt = Path(info.value.path()).read_text(encoding="utf-8")
    assert txt.strip() == text_of(page).strip() and txt.count("\n") > 20
    shot(page, "7-reloaded-job-done")


def test_a_new_upload_clears_the_previous_result(page) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Transcribe")
    expect(page.locator("#tx-dl-txt")).to_be_enabled()  # the finished job is on screen
    upload(page, "#tx-upload", [JFK])
    page.locator("#tx-progress").get_by_text("Ready · jfk.flac · 1.15 MB").wait_for()  # decimal MB
    expect(page.locator("#tx-text textarea")).to_have_value("")
    for fmt in ("txt", "srt", "vtt", "json"):
        expect(page.locator(f"#tx-dl-{fmt}")).to_be_disabled()
    expect(page.locator("#tx-cancel")).to_be_disabled()
    expect(page.locator("#tx-player audio")).to_have_count(0)
    size = page.locator('#tx-upload a[data-testid="download-link"]').first  # Gradio's 1024-based "MB": hidden
    assert size.evaluate("a => getComputedStyle(a).fontSize") == "0px"
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
    assert "bytes" in result.inner_text() and "Reserved" in result.inner_text()
    memory = page.locator("#sys-memory")
    assert "Reserved" in memory.inner_text() and "Free" in memory.inner_text()
    # Settings saved from the page land in the settings file (and so survive a restart).
    page.locator("#sys-hotwords input, #sys-hotwords textarea").first.fill("Kennedy, Boston")
    page.click("#sys-save")
    page.locator("#sys-save-msg").get_by_text("Saved to").wait_for()
    saved = json.loads((server.workdir / "settings.json").read_text(encoding="utf-8"))
    assert saved["hotwords"] == "Kennedy, Boston" and saved["device"] == "cpu"
    shot(page, "5-system")


def test_the_page_loads_nothing_from_outside_the_server(page) -> None:
    assert OFF_SERVER == [], OFF_SERVER
