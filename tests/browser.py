"""What the browser tests share: Debian's chromium through Playwright, a page per module (on
the module's own `server` fixture), screenshots, and helpers that read the page like a person."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.test_api import ROOT, Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or ROOT / "test-output" / "screenshots")
VIEWING = Path("/tmp/screens")  # a copy of every screenshot, where a person looks at them
OFF_SERVER: list[str] = []  # requests the page made to anything but our server
JFK = DATA / "jfk.flac"


@pytest.fixture(scope="module", name="browser")
def browser_fixture():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    VIEWING.mkdir(parents=True, exist_ok=True)
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


@pytest.fixture(scope="module", name="page")
def page_fixture(browser, server: Server):
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
    shutil.copy(SHOTS / f"{name}.png", VIEWING / f"{name}.png")


def view_lines(page, view: str) -> list[tuple[str, str, str]]:
    """(time, speaker, text) of each line of a transcript view ('#tx-transcript', '#hist-transcript')."""
    return page.locator(f"{view} .tv-line").evaluate_all(
        "els => els.map(li => [li.querySelector('.tv-time').innerText.trim(), "
        "li.querySelector('.tv-speaker').innerText.trim(), li.querySelector('.tv-text').innerText.trim()])")


def view_text(page, view: str) -> str:
    return " ".join(text for _, _, text in view_lines(page, view)).lower()


def audio_state(page, view: str) -> dict:
    return page.locator(f"{view} audio").evaluate(
        "a => ({t: a.currentTime, paused: a.paused, rate: a.playbackRate, duration: a.duration, src: a.src})")


def open_job(page, job_id: int) -> None:
    """History: show job `job_id` (its lines, and its player once the copy is ready)."""
    open_tab(page, "History")
    page.locator("#hist-id input, #hist-id textarea").first.fill(str(job_id))
    page.click("#hist-view")
    page.locator("#hist-details").get_by_text(f"Job {job_id}:").wait_for()
    page.locator("#hist-transcript .tv-line").first.wait_for()


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
