"""Logins in a real browser: the admin's History says whose each job is, everyone sees who is
logged in and can log out, and a user sees (and may correct) their own jobs only."""

from __future__ import annotations

import pytest

from tests.browser import browser_fixture  # noqa: F401  (the browser fixture)
from tests.browser import new_context, open_job, open_tab, shot, table_rows
from tests.test_api import Server, start_server
from webui.modules.history import History

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def login_server(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("browser-logins")
    logins = workdir / "logins.txt"
    logins.write_text("root:root-pw\nann:ann-pw\nbob:bob-pw\n")
    srv = start_server(workdir, "--auth-file", str(logins), "--admin", "root")
    history = History(srv.history_path)
    from webui.modules.transcript import TimedText, Transcript

    for owner, words in (("ann", "ann's budget meeting"), ("bob", "bob's lecture"), ("bob", "bob's interview")):
        job = history.create_job(f"{owner}.wav", f"/gone/{owner}.wav", "whisper-base", {}, owner=owner)
        history.mark_running(job)
        history.finish_job(job, Transcript(f"{owner}.wav", 4.0, "whisper-base", "en", words, words,
                                           [TimedText(0.0, 4.0, words, words)]))
    yield srv
    srv.stop()


def log_in(page, server: Server, user: str) -> None:
    page.goto(server.url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(f"{user}-pw")
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#tx-start")


def test_with_logins_the_admin_sees_owners_and_everyone_sees_who_they_are(browser, login_server: Server) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    context = new_context(browser, login_server, errors)
    try:
        page = context.new_page()
        log_in(page, login_server, "root")
        account = page.locator("#account")
        account.get_by_text("Logged in as root (administrator)").wait_for()
        open_tab(page, "History")
        page.locator("#hist-table [role=gridcell]").get_by_text("ann.wav").first.wait_for()
        headers = page.locator("#hist-table thead th").all_inner_texts()
        assert "Owner" in [h.strip() for h in headers], headers
        rows = table_rows(page, "#hist-table")
        assert sorted((r[2], r[3]) for r in rows) == [("ann.wav", "ann"), ("bob.wav", "bob"), ("bob.wav", "bob")], rows
        open_job(page, next(int(r[0]) for r in rows if r[3] == "ann"))
        expect(page.locator("#hist-transcript .tv-edit")).to_have_count(1)  # the admin may correct anyone's job
        assert "no longer on the server" in page.locator("#hist-transcript").inner_text()  # its upload is gone
        shot(page, "9a-admin-history-owners")
        page.locator("#account a", has_text="Log out").click()
        page.get_by_label("username").wait_for()  # back at the login form

        log_in(page, login_server, "bob")
        page.locator("#account").get_by_text("Logged in as bob").wait_for()
        assert "administrator" not in page.locator("#account").inner_text()
        open_tab(page, "History")
        page.locator("#hist-table [role=gridcell]").get_by_text("bob.wav").first.wait_for()
        rows = table_rows(page, "#hist-table")
        headers = [h.strip() for h in page.locator("#hist-table thead th").all_inner_texts()]
        assert "Owner" not in headers and [r[2] for r in rows] == ["bob.wav", "bob.wav"], rows
        open_job(page, int(rows[0][0]))
        expect(page.locator("#hist-transcript .tv-edit")).to_have_count(1)  # his own job
        shot(page, "9b-user-history")
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
