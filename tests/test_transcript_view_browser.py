"""The transcript view in a real browser: a line plays from its time and is marked while it
plays, speed, search; corrections saved as revisions that survive a reload, reach the downloads
and another browser, and can be undone by restoring an earlier revision."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.browser import browser_fixture, page_fixture  # noqa: F401  (the browser and page fixtures)
from tests.browser import (
    JFK, audio_state, new_context, open_job, open_page, open_tab, shot, upload, view_lines, view_text,
)
from tests.test_api import Server, start_server
from webui.modules.history import History

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_server(tmp_path_factory.mktemp("browser-view"))
    yield srv
    srv.stop()


def test_a_finished_job_shows_its_lines_with_a_player(page, server: Server) -> None:
    open_tab(page, "Transcribe")
    upload(page, "#tx-upload", [JFK])
    page.click("#tx-start")
    page.locator("#tx-progress .job-status.done").wait_for(timeout=150_000)
    page.locator("#tx-transcript audio").wait_for(timeout=60_000)
    assert "ask not what your country can do for you" in view_text(page, "#tx-transcript")
    # the lines say which language they are in (glyphs, screen readers): the one Whisper detected
    assert page.locator("#tx-transcript .tv-lines").get_attribute("lang") == "en"


def test_the_transcript_view_plays_from_a_line_highlights_it_and_searches(page, server: Server) -> None:
    from playwright.sync_api import expect

    view = "#tx-transcript"
    player = audio_state(page, view)
    assert player["src"].endswith("/audio.webm") and "/results/player-" in player["src"]  # the small copy
    page.wait_for_function(f"document.querySelector('{view} audio').duration > 10")  # 0:11, not 0:00 / 0:00
    # Range requests: the browser fetches only what it plays of a long recording.
    part = page.request.get(player["src"], headers={"Range": "bytes=0-1023"})
    assert part.status == 206 and len(part.body()) == 1024
    assert part.headers["content-range"].startswith("bytes 0-1023/")
    lines = page.locator(f"{view} .tv-line")
    last = lines.nth(lines.count() - 1)
    start = float(last.get_attribute("data-start"))
    last.locator(".tv-text").click()  # a click on a line plays from it
    page.wait_for_function(f"!document.querySelector('{view} audio').paused")
    assert audio_state(page, view)["t"] >= start - 0.05
    expect(last).to_have_class(re.compile("tv-current"))  # the line playing is marked, and only it
    assert page.locator(f"{view} .tv-current").count() == 1
    page.locator(f"{view} .tv-speed").select_option("1.5")
    assert audio_state(page, view)["rate"] == 1.5
    page.locator(f"{view} audio").evaluate("a => a.pause()")
    page.locator(f"{view} .tv-search").fill("COUNTRY")  # any case
    page.locator(f"{view} .tv-hits").get_by_text("1 of 2").wait_for()
    marks = page.locator(f"{view} mark.tv-hit")
    assert marks.count() == 2 and {m.lower() for m in marks.all_inner_texts()} == {"country"}
    page.locator(f"{view} .tv-next").click()
    page.locator(f"{view} .tv-hits").get_by_text("2 of 2").wait_for()
    shot(page, "1b-transcribe-player-search")
    page.locator(f"{view} .tv-search").fill("")
    expect(page.locator(f"{view} .tv-hits")).to_have_text("")
    expect(marks).to_have_count(0)
    assert "country" in view_text(page, view)  # the text itself is untouched


def test_corrections_are_revisions_kept_through_a_reload_in_downloads_and_a_second_browser(
        page, browser, server: Server) -> None:
    view = "#hist-transcript"
    jfk = min(r.id for r in History(server.history_path).search(name="jfk.flac", include_archived=True))
    open_job(page, jfk)
    model = view_lines(page, view)
    assert len(model) == 3, model
    page.click(f"{view} .tv-edit")
    lines = page.locator(f"{view} .tv-line")
    first = lines.nth(0).locator(".tv-text")
    first.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("And so, my fellow <Americans> & friends,")  # markup stays text
    for i in (0, 1):
        lines.nth(i).locator(".tv-speaker").click()
        page.keyboard.type("Kennedy")
    page.locator(f"{view} .tv-rename-from").select_option("Kennedy")
    page.locator(f"{view} .tv-rename-to").fill("JFK")
    page.click(f"{view} .tv-rename")  # every Kennedy line becomes JFK
    page.locator(f"{view} .tv-edit-msg").get_by_text("Kennedy renamed to JFK on 2 lines").wait_for()
    # Split the last line before "ask", then merge the first two lines.
    page.locator(f"{view} .tv-line").nth(2).locator(".tv-text").evaluate(
        """el => { el.focus(); const node = el.firstChild; const at = node.textContent.indexOf('ask what');
                   const r = document.createRange(); r.setStart(node, at); r.collapse(true);
                   const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r); }""")
    page.click(f"{view} .tv-split")
    page.locator(f"{view} .tv-edit-msg").get_by_text("Split at").wait_for()
    lines.nth(0).locator(".tv-text").click()
    page.click(f"{view} .tv-merge")
    shot(page, "3b-history-editing")
    page.click(f"{view} .tv-save")
    page.locator("#hist-edit-msg").get_by_text("Saved revision 1").wait_for()
    edited = view_lines(page, view)
    assert len(edited) == 3 and edited[0][1] == "JFK"
    assert edited[0][2].startswith("And so, my fellow <Americans> & friends, ask not")
    assert edited[1][2].startswith("what your country can do for you")
    assert edited[2][2].startswith("ask what you can do")
    assert float(lines.nth(2).get_attribute("data-start")) > float(lines.nth(1).get_attribute("data-start"))
    page.locator(view).get_by_text("Revision 1, saved by local").wait_for()
    with page.expect_download() as info:
        page.click("#hist-dl-json")
    data = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert data["revision"] == 1 and data["segments"][0]["speaker"] == "JFK"
    assert data["segments"][0]["text_itn"].startswith("And so, my fellow <Americans> & friends,")
    with page.expect_download() as info:
        page.click("#hist-dl-txt")
    txt = Path(info.value.path()).read_text(encoding="utf-8")
    assert "] JFK: And so, my fellow <Americans> & friends, ask not" in txt
    # A line with no text is refused, with a reason, and saves nothing.
    page.click(f"{view} .tv-edit")
    lines.nth(1).locator(".tv-text").evaluate("el => { el.textContent = ' '; }")
    page.click(f"{view} .tv-save")
    page.locator("#hist-edit-msg").get_by_text("Line 2 has no text").wait_for()
    assert [r.number for r in History(server.history_path).revisions(jfk)] == [1]
    page.click(f"{view} .tv-cancel")
    assert view_lines(page, view) == edited  # Discard put the saved lines back

    page.reload()
    page.wait_for_selector("#tx-start")
    open_job(page, jfk)
    assert view_lines(page, view) == edited  # still there after a reload
    errors: list[str] = []
    context = new_context(browser, server, errors)
    try:  # and in another browser, with a player that plays
        other = open_page(context, server)
        open_job(other, jfk)
        assert view_lines(other, view) == edited
        other.locator(f"{view} audio").wait_for()
        other.wait_for_function(f"document.querySelector('{view} audio').duration > 10")
        other.locator(f"{view} .tv-line").nth(1).locator(".tv-time").click()
        other.wait_for_function(f"document.querySelector('{view} audio').currentTime > 2")
        shot(other, "3c-history-second-browser")
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the second browser: {errors}"

    # Restore the model's output: a new revision (2), the corrections kept in the list.
    page.locator("#hist-revs input").click()
    page.get_by_role("option", name=re.compile("Revision 0")).click()
    page.click("#hist-restore")
    page.locator("#hist-edit-msg").get_by_text("Restored revision 0 as revision 2").wait_for()
    assert view_lines(page, view) == model
    assert [r.number for r in History(server.history_path).revisions(jfk)] == [1, 2]
    with page.expect_download() as info:
        page.click("#hist-dl-json")
    data = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert data["revision"] == 2 and "speaker" not in data["segments"][0] and "<Americans>" not in data["text_itn"]
    shot(page, "3d-history-restored")
